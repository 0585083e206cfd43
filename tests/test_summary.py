"""The notes' layer tables (LeNet 28×28, VGG-11 224×224, ResNet-18 96×96), reproduced."""

from jaxconv.models import create_model
from jaxconv.summary import layer_rows, layer_summary

LENET_28 = [
    ('Conv2d', (1, 6, 28, 28)),
    ('Sigmoid', (1, 6, 28, 28)),
    ('AvgPool2d', (1, 6, 14, 14)),
    ('Conv2d', (1, 16, 10, 10)),
    ('Sigmoid', (1, 16, 10, 10)),
    ('AvgPool2d', (1, 16, 5, 5)),
    ('Flatten', (1, 400)),
    ('Linear', (1, 120)),
    ('Sigmoid', (1, 120)),
    ('Linear', (1, 84)),
    ('Sigmoid', (1, 84)),
    ('Linear', (1, 10)),
]
VGG11_224 = [
    ('Sequential', (1, 64, 112, 112)),
    ('Sequential', (1, 128, 56, 56)),
    ('Sequential', (1, 256, 28, 28)),
    ('Sequential', (1, 512, 14, 14)),
    ('Sequential', (1, 512, 7, 7)),
    ('Flatten', (1, 25088)),
    ('Linear', (1, 4096)),
    ('ReLU', (1, 4096)),
    ('Dropout', (1, 4096)),
    ('Linear', (1, 4096)),
    ('ReLU', (1, 4096)),
    ('Dropout', (1, 4096)),
    ('Linear', (1, 10)),
]
RESNET18_96 = [
    ('Sequential', (1, 64, 24, 24)),
    ('Sequential', (1, 64, 24, 24)),
    ('Sequential', (1, 128, 12, 12)),
    ('Sequential', (1, 256, 6, 6)),
    ('Sequential', (1, 512, 3, 3)),
    ('Sequential', (1, 10)),
]


def table(name, size):
    model = create_model(name, in_channels=1, image_size=size)
    return [(r.kind, r.torch_shape()) for r in layer_rows(model, (1, size, size, 1))]


def test_lenet_table():
    assert table('lenet', 28) == LENET_28


def test_vgg11_table():
    assert table('vgg11', 224) == VGG11_224


def test_resnet18_table():
    assert table('resnet18', 96) == RESNET18_96


def test_summary_prints_shapes_and_parameter_counts():
    lines = []
    rows = layer_summary(
        create_model('lenet', in_channels=1, image_size=28), (1, 28, 28, 1), print_fn=lines.append
    )
    assert lines[0].startswith('Conv2d output shape:') and '(1, 6, 28, 28)' in lines[0]
    assert 'params: 156' in lines[0]  # 6·1·5·5 + 6
    assert rows[7].params == 400 * 120 + 120
    assert lines[-1] == 'total trainable parameters: 61,706'


def test_leaf_rows_name_every_layer():
    rows = layer_rows(
        create_model('resnet18', in_channels=1, image_size=96), (1, 96, 96, 1), leaves=True
    )
    assert (
        rows[0].name == 'net.0.0' and rows[0].kind == 'Conv2d' and rows[0].shape == (1, 48, 48, 64)
    )
    assert rows[-1].name == 'net.5.2' and rows[-1].shape == (1, 10)
