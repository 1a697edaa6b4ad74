"""Registry of the preprocessing pipelines, by model or pipeline name.

`get_preprocessing(name)` returns an `SSDPreprocessing`: call it as
`pipeline(image, labels, bboxes, out_shape, is_training, data_format='NHWC', **options)`
(see `preprocessing.ssd_preprocessing` for inputs, outputs and options).
"""

from preprocessing.ssd_preprocessing import SSDPreprocessing

# Caffe's VGG SSD subtracts BGR (104, 117, 123); the pipelines output RGB.
VGG = SSDPreprocessing('ssd_vgg', mean_rgb=(123.0, 117.0, 104.0), scale=1.0)
# Caffe MobileNet-SSD: (x - 127.5) * 0.007843.
MOBILENET = SSDPreprocessing('ssd_mobilenet', mean_rgb=(127.5, 127.5, 127.5), scale=0.007843)

PREPROCESSING_BY_NAME = {
    'ssd_vgg': VGG,
    'ssd_300_vgg': VGG,
    'ssd_512_vgg': VGG,
    'ssd_mobilenet': MOBILENET,
    'ssd_300_mobilenet': MOBILENET,
}


def get_preprocessing(name):
    """The pipeline for a model name (`ssd_300_vgg`, ...) or pipeline name (`ssd_vgg`, ...)."""
    try:
        return PREPROCESSING_BY_NAME[name]
    except KeyError:
        raise ValueError(
            f'unknown preprocessing {name!r}; known: {sorted(PREPROCESSING_BY_NAME)}.'
        ) from None
