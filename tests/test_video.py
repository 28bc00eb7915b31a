import av
import numpy as np
import pytest

from cowdetect.demo import make_demo_video
from cowdetect.video import VideoReader, VideoWriter, probe_video, read_frames, write_video


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
    with pytest.raises(ValueError, match="not a video file"):
        list(read_frames(bad))


def test_demo_video_in_store(store):
    video_id = make_demo_video(store, seconds=1.0, fps=10, size=(160, 96))
    video = store.videos()[0]
    assert video.id == video_id and video.frames == 10 and video.path.is_file()
    lines = video.gt_path.read_text().splitlines()
    assert lines and all(len(line.split(",")) == 9 for line in lines)
    assert {int(line.split(",")[0]) for line in lines} <= set(range(1, 11))


def _write_raw(path, frames, fps=25, rotation=0, pts=None, time_base=None):
    """Write frames with PyAV directly, to make the odd files phones and cameras produce."""
    from fractions import Fraction
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if time_base is not None:
            stream.codec_context.time_base = Fraction(*time_base)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts is not None:
                vf.pts = pts[i]
                vf.time_base = Fraction(*time_base)
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))


def test_probe_and_background_writer(tmp_path):
    frames = [np.full((48, 80, 3), i * 10, np.uint8) for i in range(12)]
    path = tmp_path / "bg.mp4"
    with VideoWriter(path, fps=12, background=True) as writer:
        for f in frames:
            writer.write(f)
    assert writer.count == 12
    info = probe_video(path)
    assert (info.width, info.height, info.frames, info.rotation, info.codec) == (80, 48, 12, 0, "h264")
    assert info.fps == 12 and abs(info.duration - 1.0) < 0.1


def test_rotation_metadata_is_applied(tmp_path):
    """A phone video stored landscape with a 90° display rotation comes out upright (portrait)."""
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:16, :16] = 255  # a white mark top-left of the stored picture
    path = tmp_path / "rot.mp4"
    _write_raw(path, [frame] * 3, rotation=90)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (64, 96, 90)
    first = next(iter(VideoReader(path))).rgb
    assert first.shape == (96, 64, 3)
    # 90° counter-clockwise (FFmpeg's display matrix): the top-left mark moves to the bottom-left
    assert first[-16:, :16].mean() > 200 and first[:16, :16].mean() < 50


def test_variable_frame_rate_keeps_true_times(tmp_path):
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(5)]
    pts = [0, 40, 80, 200, 400]  # ms: 25 fps, then a stall, then slower
    path = tmp_path / "vfr.mkv"
    _write_raw(path, frames, fps=25, pts=pts, time_base=(1, 1000))
    times = [f.time for f in VideoReader(path)]
    assert times == pytest.approx([0.0, 0.04, 0.08, 0.2, 0.4], abs=0.002)


def test_cut_off_file_keeps_frames_and_says_where(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(40)]
    path = tmp_path / "full.mp4"
    write_video(iter(frames), path, fps=10)
    cut = tmp_path / "cut.mp4"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reader = VideoReader(cut)
    got = sum(1 for _ in reader)
    assert 0 < got < 40
    assert reader.error is not None and f"frame {got}" in reader.error and "40" in reader.error


@pytest.mark.parametrize("content, message", [
    (b"", "not a video file"),
    (b"hello " * 200, "not a video file"),
    ("header", "not a video file"),   # only the first 3 kB of a real MP4: no frames
])
def test_unreadable_videos(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    if content == "header":
        good = tmp_path / "good.mp4"
        write_video(iter([np.zeros((32, 32, 3), np.uint8)] * 5), good, fps=5)
        content = good.read_bytes()[:600]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        probe_video(path)


def test_frames_too_large_are_refused_before_anything_is_stored(store):
    from cowdetect.video import VideoInfo, check_frame_size

    with pytest.raises(ValueError, match="huge.mp4: frames of 10000x10000 are 100 megapixels, more than the limit"):
        check_frame_size(VideoInfo(10000, 10000, 1.0, 1, 1.0, 0, "h264"), "huge.mp4")
    eight_k = VideoInfo(7680, 4320, 25.0, 1, 1.0, 0, "h264")
    assert check_frame_size(eight_k, "8k.mp4") is eight_k  # 8K UHD fits
    with pytest.raises(ValueError, match="frames of 10000x10000 are more than the limit of 50 megapixels"):
        store.add_video(b"any bytes", "huge.mp4", 10000, 10000, 1.0, 1)  # the store checks too
    assert store.videos() == [] and not list(store.data_dir.rglob("*.mp4"))
