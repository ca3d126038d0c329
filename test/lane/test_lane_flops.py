"""MAC counting against hand-computed layers and torch's own flop counter."""

from __future__ import annotations

import torch
from edge_perception.flops import count_cost, flops_torch
from edge_perception.lane.model import build_model
from torch import nn


def test_macs_by_hand():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*8*8 outputs x 3*9 = 13824
        nn.Conv2d(8, 8, 5, padding=2, groups=8),  # 512 outputs x 1*25 = 12800
        nn.Flatten(),
        nn.Linear(512, 10),  # 10 x 512 = 5120
    )
    cost = count_cost(net, torch.zeros(1, 3, 8, 8))
    assert [m for _, _, m in cost.layers] == [13824, 12800, 5120]
    assert cost.macs == 31744 and cost.flops == 63488
    assert cost.params == (3 * 9 * 8 + 8) + (25 * 8 + 8) + (512 * 10 + 10)


def test_lane_model_matches_torch_flop_counter():
    model = build_model("tiny")
    x = torch.rand(1, 3, 64, 96)
    cost = count_cost(model, x)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert cost.flops == flops_torch(model, x)
    # MACs grow with the pixel count (fully convolutional)
    assert count_cost(model, torch.rand(1, 3, 128, 192)).macs == 4 * cost.macs
