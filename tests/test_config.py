import pytest

from evorl_core.config import PRESETS, ConfigError, TrainConfig, make_config, parse_floats, validation_errors


def test_production_preset_is_the_original_configuration():
    c = make_config("production")
    assert (c.num_envs, c.num_steps, c.minibatch_size, c.epochs, c.hidden) == (256, 512, 4096, 4, (1024, 512, 256))
    assert c.batch_size == 131072 and c.num_minibatches == 32


def test_overrides_and_round_trip():
    c = make_config("quick", num_envs=32, positions=(-1.0, 0.0, 1.0), seed=None)
    assert c.num_envs == 32 and c.positions == (-1.0, 0.0, 1.0) and c.seed == 0
    assert TrainConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("field,value,fragment", [
    ("minibatch_size", 1000, "must divide"),
    ("execution", "vwap", "execution"),
    ("positions", (0.0,), "at least two"),
    ("positions", (0.0, 2.0), "[-1, 1]"),
    ("test_days", 1, "test_days"),
    ("symbols", ("BP CL",), "not a valid ticker"),
    ("lr", -1.0, "lr"),
    ("data", "ftp://x", "data"),
])
def test_bad_values_name_their_field(field, value, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        make_config("quick", **{field: value})
    assert fragment in str(err.value)
    assert validation_errors(TrainConfig(**{**make_config("quick").to_dict(), field: value}))


def test_unknown_preset_and_field():
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ConfigError, match="unknown config field"):
        make_config("quick", nonsense=1)


def test_parse_floats_error_names_field():
    assert parse_floats("0, 0.5,1", "positions") == (0.0, 0.5, 1.0)
    with pytest.raises(ConfigError, match="positions"):
        parse_floats("0,a", "positions")


def test_presets_apply_every_value_and_overrides_win():
    for name, values in PRESETS.items():
        c = make_config(name)
        assert c.preset == name
        for key, value in values.items():
            expected = tuple(value) if isinstance(value, list) else value
            assert getattr(c, key) == expected, (name, key)
        assert c.num_updates == -(-c.total_timesteps // c.batch_size)
    quick = make_config("quick")
    assert (quick.hidden, quick.num_envs, quick.init_scheme) == ((64, 64), 64, "orthogonal")
    assert make_config("quick", lr=5e-4, hidden=(8,)).lr == 5e-4
    assert make_config("quick", hidden=(8,)).hidden == (8,)


def test_old_config_key_init_still_loads():
    old = {**make_config("quick").to_dict(), "init": "normal"}
    del old["init_scheme"]
    assert TrainConfig.from_dict(old).init_scheme == "normal"
