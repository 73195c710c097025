from .fashion_mnist import CLASSES, find_data_dir, load_fashion_mnist
from .folder import load_image_folder

__all__ = ["CLASSES", "find_data_dir", "load_fashion_mnist", "load_image_folder"]
