"""Post-deployment fine-tuning of the NPU head and the NPU weight-image format (docs/npu.md)."""
from .image import NPUImage, apply_image, check_fits, image_from_program, read_image, write_image

__all__ = ["NPUImage", "apply_image", "check_fits", "image_from_program", "read_image", "write_image"]
