"""An example tts-zoo plugin. Keep this module free of heavy imports: the registry imports it to
find ``registry.yaml`` when listing components."""
