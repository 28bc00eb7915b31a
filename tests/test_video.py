import av
import numpy as np
import pytest

from cowdetect.demo import make_demo_video
from cowdetect.video import read_frames, write_video


def test_write_h264_and_read_back(tmp_path):
    frames = [np.full((36, 64, 3), (i * 20) % 255, np.uint8) for i in range(10)]
    path = tmp_path / "v.mp4"
    assert write_video(iter(frames), path, fps=10) == 10
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    back = list(read_frames(path))
    assert len(back) == 10 and back[0].shape == (36, 64, 3)
    assert abs(int(back[5].mean()) - 100) < 6


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(iter([]), tmp_path / "e.mp4")
    with pytest.raises(ValueError, match="differs from the first"):
        write_video(iter([np.zeros((8, 8, 3), np.uint8), np.zeros((10, 8, 3), np.uint8)]), tmp_path / "d.mp4")


def test_not_a_video(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="cannot be opened"):
        list(read_frames(bad))


def test_demo_video_in_store(store):
    video_id = make_demo_video(store, seconds=1.0, fps=10, size=(160, 96))
    video = store.videos()[0]
    assert video["id"] == video_id and video["frames"] == 10 and video["path"].is_file()
    lines = video["gt_path"].read_text().splitlines()
    assert lines and all(len(line.split(",")) == 9 for line in lines)
    assert {int(line.split(",")[0]) for line in lines} <= set(range(1, 11))
