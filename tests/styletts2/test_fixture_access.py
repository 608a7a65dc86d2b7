from tests.styletts2.reference import FIXTURE_SETS


def test_both_public_fixture_sets_are_found():
    assert {"tiny_istftnet", "tiny_hifigan"} <= set(FIXTURE_SETS)


def test_fixture_set_reads_its_own_config(fixture_set):
    mp = fixture_set.model_params
    assert mp["n_token"] == len(fixture_set.fx["textcleaner"]["symbols"])
    assert fixture_set.fx["meta"]["multispeaker"] == fixture_set.multispeaker
