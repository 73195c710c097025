"""One place that turns a checkpoint's `model_config` into a float network: MobileNetV2's own
config, or `{"graph": GraphSpec}` for any other CNN."""
from __future__ import annotations

from torch import nn

from .graph import GraphNet, GraphSpec
from .mobilenetv2 import MobileNetV2, MobileNetV2Config


def is_graph(model_config) -> bool:
    return isinstance(model_config, dict) and "graph" in model_config


def graph_spec(model_config: dict) -> GraphSpec:
    if set(model_config) != {"graph"}:
        raise ValueError(f"a graph model_config has only the key 'graph' (got {sorted(model_config)})")
    return GraphSpec.from_dict(model_config["graph"])


def fp32_from_config(model_config: dict) -> nn.Module:
    """The float network a model_config declares (ValueError/TypeError when it is malformed)."""
    if is_graph(model_config):
        return GraphNet(graph_spec(model_config))
    cfg = MobileNetV2Config.from_dict(model_config)
    cfg.validate()
    return MobileNetV2(cfg)


def input_shape_of(model_config: dict) -> tuple[int, int, int]:
    if is_graph(model_config):
        return tuple(graph_spec(model_config).input_shape)
    cfg = MobileNetV2Config.from_dict(model_config)
    return (cfg.in_channels, cfg.input_size, cfg.input_size)


def num_classes_of(model_config: dict) -> int:
    if is_graph(model_config):
        return graph_spec(model_config).num_classes
    return MobileNetV2Config.from_dict(model_config).num_classes
