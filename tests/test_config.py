import pytest

from cowdetect.config import DetectorConfig, TrainConfig, from_dict, load_yaml, save_yaml, to_dict


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig(iterations=7, lr_steps=(0.5,))
    save_yaml(cfg, tmp_path / "t.yaml")
    assert load_yaml(TrainConfig, tmp_path / "t.yaml") == cfg


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"unknown settings \['colour'\]"):
        from_dict(DetectorConfig, {**to_dict(DetectorConfig()), "colour": 1})


@pytest.mark.parametrize("kwargs, message", [({"iterations": 0}, "iterations"), ({"batch_size": 0}, "batch_size"),
                                             ({"learning_rate": -1.0}, "learning_rate")])
def test_bad_train_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
