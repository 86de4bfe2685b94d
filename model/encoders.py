"""Token encoders: IMPALA CNN for 64x64 frames, Linear for padded low-dimensional states."""
from __future__ import annotations

import torch
from torch import nn


class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv_0 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv_1 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv_1(torch.relu(self.conv_0(torch.relu(x))))


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.residual_0 = _Residual(cout)
        self.residual_1 = _Residual(cout)

    def forward(self, x):
        return self.residual_1(self.residual_0(self.pool(self.conv(x))))


class ImpalaEncoder(nn.Module):
    """uint8 [N, 64, 64, C] frames (C = 1 is repeated to 3) -> [N, H]."""

    def __init__(self, hidden: int):
        super().__init__()
        self.cnn = nn.Sequential(_Stage(3, 16), _Stage(16, 32), _Stage(32, 32))
        self.linear = nn.Sequential(nn.Linear(32 * 8 * 8, hidden), nn.ReLU())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(self.linear[0].weight.dtype).permute(0, 3, 1, 2) / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.relu(self.cnn(x))
        return self.linear(x.flatten(1))


def pad_states(states: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad the last dim to ``width`` (the reference pads every domain's state to 204)."""
    return nn.functional.pad(states.to(torch.float32), (0, width - states.shape[-1]))
