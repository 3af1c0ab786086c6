"""AdamW's state saved with a round's checkpoint and read back (actors/kernels/training_state.py): a model that
continues from the saved weights and state takes the same steps as the one that never stopped, bit for bit;
a state saved for other parameters or another layout is refused naming why; pruning keeps old rounds checkable.
Pure torch on a tiny module (the learner's use of it runs in tests/test_exact_resume.py)."""

from __future__ import annotations

import json

import pytest
import torch

from actors.kernels.training_state import (
    FOLDER,
    META_FILE,
    TrainingStateError,
    check_fits,
    load_training_state,
    save_training_state,
)


def model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    model[2].bias.requires_grad_(False)  # a frozen parameter: not part of the state
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=0.05, weight_decay=0.01)


def steps(model, optimizer, count: int, start: int) -> None:
    for step in range(start, start + count):
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(8, 6, generator=generator)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def named(model):
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def test_a_resumed_optimizer_takes_the_uninterrupted_steps(tmp_path):
    model, optimizer = model_and_optimizer()
    steps(model, optimizer, 3, 0)
    save_training_state(str(tmp_path), named(model), optimizer, round_index=0, global_step=3, rank=0,
                        world_size=1, sharded=False)
    assert sorted(p.name for p in (tmp_path / FOLDER).iterdir()) == sorted([META_FILE, "optimizer.safetensors"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    steps(model, optimizer, 3, 3)  # the uninterrupted run

    resumed, fresh = model_and_optimizer(seed=1)  # other initial weights: all must come from the save
    resumed.load_state_dict(weights)
    meta = load_training_state(str(tmp_path), named(resumed), fresh, rank=0, world_size=1, sharded=False)
    assert meta["global_step"] == 3 and meta["round_index"] == 0
    steps(resumed, fresh, 3, 3)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name

    # Without the saved state the same three steps land elsewhere: the test above can fail.
    restarted, cold = model_and_optimizer(seed=1)
    restarted.load_state_dict(weights)
    steps(restarted, cold, 3, 3)
    assert not torch.equal(restarted[0].weight, model[0].weight)


def test_a_state_for_other_parameters_or_another_layout_is_refused(tmp_path):
    model, optimizer = model_and_optimizer()
    steps(model, optimizer, 1, 0)
    save_training_state(str(tmp_path), named(model), optimizer, round_index=2, global_step=1, rank=0,
                        world_size=1, sharded=False)
    other = torch.nn.Linear(6, 2)
    with pytest.raises(TrainingStateError, match="saved for other parameters"):
        load_training_state(str(tmp_path), list(other.named_parameters()), torch.optim.AdamW(other.parameters()),
                            rank=0, world_size=1, sharded=False)
    with pytest.raises(TrainingStateError, match="saved replicated; this learner is sharded over 2"):
        check_fits(str(tmp_path), sharded=True, world_size=2)
    # A sharded save needs every rank's file, and as many ranks to read it.
    meta_path = tmp_path / FOLDER / META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "sharded": True, "world_size": 2}))
    with pytest.raises(TrainingStateError, match="sharded over 2 ranks; this learner is sharded over 4"):
        check_fits(str(tmp_path), sharded=True, world_size=4)
    with pytest.raises(TrainingStateError, match=r"optimizer.rank0-of-2.safetensors is missing"):
        check_fits(str(tmp_path), sharded=True, world_size=2)
    meta_path.write_text("{not json")
    with pytest.raises(TrainingStateError, match="not a readable training state"):
        check_fits(str(tmp_path), sharded=False, world_size=1)


def test_pruned_rounds_still_match_their_manifest(tmp_path):
    from actors.contracts import CHECKPOINT_DIR, COMPLETE_MARKER
    from cluster.round_manifest import check_round, read_manifest
    from cluster.run_store import RunStore

    store = RunStore(tmp_path / "run")
    for index in range(3):
        writer = store.begin_round(index)
        state = writer.checkpoint_dir / FOLDER
        state.mkdir(parents=True)
        (state / "optimizer.safetensors").write_bytes(b"x" * 10)
        (writer.checkpoint_dir / "model.safetensors").write_bytes(b"w")
        writer.commit()
    removed = store.prune_training_state(keep=2)
    assert removed == [store.round_path(0) / CHECKPOINT_DIR / FOLDER]
    assert (store.round_path(1) / CHECKPOINT_DIR / FOLDER).is_dir()
    assert check_round(store.round_path(0), COMPLETE_MARKER) == []
    assert list(read_manifest(store.round_path(0) / COMPLETE_MARKER)) == [f"{CHECKPOINT_DIR}/model.safetensors"]
    assert store.prune_training_state(keep=0) == [store.round_path(i) / CHECKPOINT_DIR / FOLDER for i in (1, 2)]
    assert all(check_round(store.round_path(i), COMPLETE_MARKER) == [] for i in range(3))
