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


def test_one_table_of_training_defaults():
    """A bare TrainConfig has the default architecture's settings (it had Faster R-CNN's while the
    default architecture is SSD); every architecture has one row; overrides of None keep the row."""
    from cowdetect.config import DEFAULT_ARCHITECTURE, TRAIN_DEFAULTS
    from cowdetect.models import ARCHITECTURES
    assert TrainConfig() == TrainConfig.for_architecture(DEFAULT_ARCHITECTURE)
    assert set(TRAIN_DEFAULTS) == set(ARCHITECTURES)
    frcnn = TrainConfig.for_architecture("fasterrcnn_resnet50_fpn", batch_size=None, iterations=5)
    assert (frcnn.batch_size, frcnn.learning_rate, frcnn.iterations) == (2, 0.01, 5)
    with pytest.raises(ValueError, match="architecture: expected one of"):
        TrainConfig.for_architecture("yolo")
