"""Video in, video out: decode a clip, run every frame through a model in batches, encode the result.

- :mod:`~i2i.video.files`: which paths are videos, where their outputs go (no PyAV needed).
- :mod:`~i2i.video.reading`: probing and decoding with PyAV (FFmpeg inside the wheel), clear errors for bad files.
- :mod:`~i2i.video.writing`: encoding (H.264/MP4 by default) to a temporary name, the audio stream copied or
  re-encoded, renamed into place at the end.
- :mod:`~i2i.video.pipeline`: decode and encode threads beside the model, bounded queues (memory flat in the
  clip's length), progress in frames.
- :mod:`~i2i.video.translate`: a CycleGAN/CUT/FastCUT generator on a clip (:func:`translate_video`).
- :mod:`~i2i.video.temporal`, :mod:`~i2i.video.flow`, :mod:`~i2i.video.flicker`: opt-in temporal consistency
  along optical flow, and the warping error that measures flicker.

Importing this package does not import PyAV, OpenCV or torch.
"""

from i2i.video.files import VIDEO_EXTENSIONS, is_video_file, split_videos, video_targets

__all__ = ["VIDEO_EXTENSIONS", "is_video_file", "split_videos", "video_targets"]
