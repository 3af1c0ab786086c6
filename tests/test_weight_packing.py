"""Packing a state dict for transport: flat per-dtype buffers, tied weights sent once, exact round trip."""

from __future__ import annotations

import torch

from actors.weight_sync.packing import join_shared, pack_state_dict, split_shared, unpack_state_dict


def tied_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    embed = torch.randn(10, 4)
    return {
        "embed.weight": embed,
        "block.weight": torch.randn(4, 4),
        "block.bias": torch.randn(4).to(torch.bfloat16),
        "lm_head.weight": embed,  # tied: the same storage under a second name
        "view.weight": embed[:5],  # shares storage but is a different tensor: must be sent on its own
    }


def test_tied_tensors_are_sent_once_and_restored_as_one():
    state = tied_state_dict()
    unique, aliases = split_shared(state)
    assert aliases == {"lm_head.weight": "embed.weight"}
    assert set(unique) == {"embed.weight", "block.weight", "block.bias", "view.weight"}
    joined = join_shared(unique, aliases)
    assert joined["lm_head.weight"] is joined["embed.weight"]


def test_pack_unpack_round_trip_is_exact_per_dtype():
    state = tied_state_dict()
    buffers, slots, aliases = pack_state_dict(state)
    assert set(buffers) == {"torch.float32", "torch.bfloat16"}
    assert buffers["torch.float32"].numel() == 40 + 16 + 20  # the tied copy is not in the buffer
    # The receiver gets fresh buffers of the same layout (as after a broadcast), then views into them.
    received = {dtype: buffer.clone() for dtype, buffer in buffers.items()}
    restored = unpack_state_dict(received, slots, aliases)
    assert set(restored) == set(state)
    for name, tensor in state.items():
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor), name
    assert restored["lm_head.weight"].data_ptr() == restored["embed.weight"].data_ptr()
