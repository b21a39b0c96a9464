"""FreeControl math as pure functions, against values computed by hand; token lookup, subject parsing, cache
entries and the import of the official pca_info.pt."""

import math
import pickle

import pytest
import torch

from i2i.errors import CheckpointError, UsageError
from i2i.freecontrol import guidance as G


def test_semantic_coordinates_project_centred_keys():
    keys = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])               # [1, 2, 2]
    mean = torch.tensor([1.0, 1.0])
    basis = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert torch.equal(G.semantic_coordinates(keys, mean, basis), torch.tensor([[[1.0, 0.0], [3.0, 2.0]]]))
    assert G.semantic_coordinates(keys, mean, basis, n_components=1).shape == (1, 2, 1)


def test_minmax_normalize_per_component_with_detached_range():
    x = torch.tensor([[[2.0, 5.0], [4.0, 5.0], [6.0, 5.0]]], requires_grad=True)   # [1, 3, 2]
    y = G.minmax_normalize(x)
    assert torch.allclose(y[0, :, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(y[0, :, 1], torch.zeros(3))                # a constant component maps to 0
    y[..., 0].sum().backward()
    assert torch.allclose(x.grad[0, :, 0], torch.full((3,), 0.25))  # 1 / (max - min): min and max are detached


def test_minmax_normalize_treats_a_component_flat_to_rounding_as_constant():
    """Keys of a LayerNorm'd input span one dimension fewer than their channels; with every channel kept as a
    component, the last one's spread is float32 rounding (1e-6 next to 11 on the demo model). It must not be
    stretched to [0, 1] (its gradient would be 1e6 times the others'): it maps to 0 with no gradient."""
    torch.manual_seed(0)
    ln = torch.nn.LayerNorm(8, elementwise_affine=False)
    proj = torch.nn.Linear(8, 8)
    h = torch.randn(1, 16, 8, requires_grad=True)
    keys = proj(ln(h))                                           # [1, HW=16, C=8], rank 7 (+ the bias)
    flat_keys = keys.detach()[0]
    _, _, vh = torch.linalg.svd(flat_keys - flat_keys.mean(0), full_matrices=False)
    coords = (keys - flat_keys.mean(0)) @ vh.T                   # all 8 components
    spread = (coords.amax(1) - coords.amin(1))[0].detach()
    assert spread[-1] < 1e-5 * spread[0]                         # the null direction: rounding only
    y = G.minmax_normalize(coords)
    assert torch.equal(y[0, :, -1], torch.zeros(16))
    assert torch.allclose(y[0, :, :-1].amax(0), torch.ones(7)) and torch.equal(y[0, :, :-1].amin(0), torch.zeros(7))
    (g,) = torch.autograd.grad(y.pow(2).sum(), h, retain_graph=True)
    (g7,) = torch.autograd.grad(G.minmax_normalize(coords[..., :-1]).pow(2).sum(), h)
    assert torch.allclose(g, g7)                                 # the flat component adds nothing


def test_cross_attention_mask_hand_computed():
    probs = torch.tensor([[0.5, 0.1, 0.0], [0.2, 0.5, 0.1], [0.4, 0.3, 0.0], [0.0, 0.9, 0.3]])   # [HW=4, T=3]
    # token 1: [0.1, 0.5, 0.3, 0.9] -> normalised [0, 0.5, 0.25, 1] -> > 0.3
    assert torch.equal(G.cross_attention_mask(probs, [1], 0.3), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    # tokens 1 and 2 summed: [0.1, 0.6, 0.3, 1.2] -> [0, 0.4545, 0.1818, 1]; threshold 0.5 keeps only the last
    assert torch.equal(G.cross_attention_mask(probs, [1, 2], 0.5), torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(G.cross_attention_mask(torch.ones(4, 3), [1], 0.3), torch.ones(4))  # no contrast


COND = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])        # [HW=3, K=2]
GEN = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]])       # [B=1, HW=3, K=2]


def test_structure_energy_with_mask_hand_computed():
    mask = torch.tensor([1.0, 1.0, 0.0])
    # forward: masked entries (rows 0, 1): squared errors 0, 1, 0, 1 -> 0.5
    # tau = max over positions of COND * (1 - M) = [0.5, 0.5]; relu(GEN * (1 - M) - tau) = 0.5 at (2, 0) only
    # backward: 10 * 0.25 / 6 entries
    expected = 0.5 + 10 * 0.25 / 6
    assert G.structure_energy(COND, GEN, mask, penalty=10.0).item() == pytest.approx(expected)
    assert G.structure_energy(COND, GEN, mask, penalty=0.0).item() == pytest.approx(0.5)


def test_structure_energy_without_mask_is_plain_mse():
    # squared errors 0, 1, 0, 1, 0.25, 0.25 over 6 entries; no background term (image-to-image)
    assert G.structure_energy(COND, GEN, None, penalty=10.0).item() == pytest.approx(2.5 / 6)


def test_structure_energy_gradient_pulls_towards_condition():
    gen = GEN.clone().requires_grad_(True)
    G.structure_energy(COND, gen, torch.tensor([1.0, 1.0, 0.0]), 10.0).backward()
    # inside the mask d/dgen = 2 (gen - cond) / 4 masked entries; outside: 10 * 2 * 0.5 / 6 at (2, 0), else 0
    expected = torch.tensor([[[0.0, -0.5], [0.0, 0.5], [10 / 6, 0.0]]])
    assert torch.allclose(gen.grad, expected)


def test_appearance_vectors_and_energy_hand_computed():
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]], requires_grad=True)   # [1, 3, C=2]
    coords = torch.tensor([[[0.9, 0.2, 0.7], [0.6, 0.8, 0.1], [0.4, 1.0, 0.9]]])   # [1, 3, K=3]; only 2 are used
    v = G.appearance_vectors(keys, coords, n_components=2, threshold=0.5)
    expected = torch.tensor([[[0.9, 0.6], [2.0, 2.8]]]) / torch.tensor([[[1.5 + 1e-5], [1.8 + 1e-5]]])
    assert v.shape == (1, 2, 2)
    assert torch.allclose(v, expected)
    ref = torch.zeros_like(v, requires_grad=True)
    energy = G.appearance_energy(v, ref)
    assert energy.item() == pytest.approx(float(expected.pow(2).mean()))
    energy.backward()
    assert ref.grad is None                                           # the sibling's vectors are a fixed target
    assert keys.grad is not None and keys.grad.abs().sum() > 0


def test_warmup_weight_ramps_from_zero():
    assert G.warmup_weight(0, 600.0, 10) == 0.0
    assert G.warmup_weight(5, 600.0, 10) == 300.0
    assert G.warmup_weight(10, 600.0, 10) == 600.0
    assert G.warmup_weight(0, 600.0, 0) == 600.0


def test_guided_update_hand_computed():
    out = G.guided_update(torch.tensor([1.0]), torch.tensor([2.0]), alpha_prod_t=0.36, alpha_prod_t_prev=0.64)
    assert out.item() == pytest.approx(1 - 0.6 * 0.8 * 2)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_guided_update_equals_the_official_scheduler_step(prediction_type):
    """x0 from the unguided prediction, eps' = eps - sqrt(1 - a_t) * grad in the direction term only."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    sched.set_timesteps(20)
    t = int(sched.timesteps[5])
    prev_t = t - 1000 // 20
    gen = torch.Generator().manual_seed(0)
    x, out, grad = (torch.randn(1, 4, 3, 3, generator=gen) for _ in range(3))
    a_t, a_prev = sched.alphas_cumprod[t], sched.alphas_cumprod[prev_t]
    if prediction_type == "epsilon":
        eps = out
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    else:
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * out
        eps = a_t.sqrt() * out + (1 - a_t).sqrt() * x
    official = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * (eps - (1 - a_t).sqrt() * grad)
    ours = G.guided_update(sched.step(out, t, x).prev_sample, grad, float(a_t), float(a_prev))
    assert torch.allclose(ours, official, atol=1e-5)


def test_pca_basis_finds_the_main_direction():
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(500, 1, generator=gen) * 3
    direction = torch.tensor([[1.0, 1.0, 0.0]]) / math.sqrt(2)
    x = t * direction + 0.05 * torch.randn(500, 3, generator=gen) + torch.tensor([5.0, -2.0, 1.0])
    mean, basis = G.pca_basis(x, n_components=64)
    assert basis.shape == (3, 3)                                      # K = min(64, N, C)
    assert torch.allclose(mean, x.mean(0))
    assert abs(float(basis[0] @ direction[0])) == pytest.approx(1.0, abs=1e-3)
    assert torch.allclose(basis @ basis.T, torch.eye(3), atol=1e-5)


def test_subject_tokens_and_parsing():
    from tiny_sd import tokenizer

    from i2i.freecontrol.features import prompt_token_indices, subject_token_indices
    from i2i.freecontrol.pipeline import default_concept, parse_subject

    tok = tokenizer()
    assert subject_token_indices(tok, "a photo of a dog", "dog") == [5]      # BOS is position 0
    assert subject_token_indices(tok, "a photo of a dog", "a") == [1, 4]
    assert prompt_token_indices(tok, "a photo of a dog") == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="does not occur"):
        subject_token_indices(tok, "a photo of a dog", "lion")
    assert parse_subject("(dog; lion)") == ("dog", "lion")
    assert parse_subject("dog;lion") == ("dog", "lion")
    assert parse_subject("dog") == ("dog", None)
    assert parse_subject(None) == (None, None)
    with pytest.raises(UsageError):
        parse_subject("a;b;c")
    assert default_concept("a photo of a lion, in the desert") == "lion"
    assert default_concept("a red square", "square;circle") == "circle"


def test_the_default_concept_is_a_word_of_the_first_comma_separated_part_that_has_one():
    from i2i.demo.model import demo_model_path, demo_vocabulary_warning
    from i2i.freecontrol.pipeline import default_concept

    assert default_concept(", a red circle") == "circle"
    assert default_concept(" , 🟥, a blue Square.") == "square"
    assert default_concept("a red circle 🟥") == "circle"          # a word as the demo vocabulary check reads words
    assert demo_vocabulary_warning(["a red circle 🟥"], demo_model_path()) is None
    with pytest.raises(UsageError, match="no word to take the concept.*--concept WORD"):
        default_concept("🟥, !")


def test_cache_entry_checksum_key_and_corruption(tmp_path):
    from i2i.diffusion.cache import entry_status, load_entry, save_entry

    path = tmp_path / "e.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    save_entry(path, tensors, "key1", {"x": 1})
    loaded, info = load_entry(path, "key1")
    assert torch.equal(loaded["a"], tensors["a"]) and info == {"x": 1}
    assert load_entry(path, "other-key") is None
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF                                                  # flip a byte of the tensor data
    path.write_bytes(bytes(data))
    assert entry_status(path, "key1") == "corrupt"
    path.write_bytes(b"\x10\x00")
    assert load_entry(path, None) is None
    assert entry_status(tmp_path / "missing", None) == "missing"


def test_import_official_pca_info_by_timestep(tmp_path):
    from i2i.freecontrol.bases import import_official, read_bases_file, schedule_timesteps

    assert schedule_timesteps(200)[:3] == [996, 991, 986] and schedule_timesteps(200)[-1] == 1
    layers = [f"up_blocks.1.attentions.{j}.transformer_blocks.0.attn1" for j in range(3)]
    data = {i: {"attn_key": {n: {"mean": torch.full((8,), float(i + j)), "basis": torch.eye(8)[:4] * (j + 1)}
                             for j, n in enumerate(layers)}} for i in (0, 1, 119)}
    official = tmp_path / "step_200_sample_20_id_0" / "pca_info.pt"      # where the official script writes it
    official.parent.mkdir()
    torch.save(data, official)
    bases = import_official(official)
    assert bases.timesteps.tolist() == [996, 991, 401]
    assert bases.layers == tuple(layers)
    assert bases.means.shape == (3, 3, 8) and bases.bases.shape == (3, 3, 4, 8)
    assert float(bases.means[2, 1, 0]) == 120.0                       # step 119, layer 1
    assert bases.index(400) == 2 and bases.index(995) == 0
    assert read_bases_file(official).layers == tuple(layers)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({0: Evil()}, protocol=2))
    with pytest.raises(CheckpointError):
        import_official(tmp_path / "evil.pt", 200)


def test_import_official_reads_the_schedule_from_the_name_or_refuses(tmp_path):
    """The official file keys its bases by step index of the schedule that made it (sample_semantic_bases.py:
    199 steps by default, 200 in its example scripts) and does not record it; its folder name does."""
    from i2i.freecontrol.bases import import_official, official_schedule_steps, read_bases_file

    layer = "up_blocks.1.attentions.0.transformer_blocks.0.attn1"
    data = {i: {"attn_key": {layer: {"mean": torch.zeros(4), "basis": torch.eye(4)}}} for i in range(120)}
    for folder, steps, first, last in (("step_199_sample_10_id_0", 199, 991, 396),      # ratio 5: 198*5+1
                                       ("step_50_sample_20_id_3", 50, 981, None)):
        path = tmp_path / folder / "pca_info.pt"
        path.parent.mkdir()
        torch.save(data if last else {i: data[i] for i in range(30)}, path)
        assert official_schedule_steps(path) == steps
        ts = read_bases_file(path).timesteps.tolist()
        assert ts[0] == first and ts == sorted(ts, reverse=True)
        assert last is None or ts[-1] == last
    assert read_bases_file(tmp_path / "step_50_sample_20_id_3" / "pca_info.pt").timesteps[1] == 961   # 20 apart
    with pytest.raises(CheckpointError, match="119 is outside the 50-step"):                       # 120 > 50
        torch.save(data, tmp_path / "cat_step_50.pt")
        import_official(tmp_path / "cat_step_50.pt")
    torch.save(data, tmp_path / "pca_info.pt")
    with pytest.raises(CheckpointError, match="does not record"):
        read_bases_file(tmp_path / "pca_info.pt")
    assert import_official(tmp_path / "pca_info.pt", 199).timesteps[0] == 991     # the Python caller may say


def test_pca_basis_stops_at_the_rank_of_the_centred_features():
    gen = torch.Generator().manual_seed(0)
    few = torch.randn(8, 32, generator=gen)                     # 8 samples: the centred ones span 7 dimensions
    mean, basis = G.pca_basis(few, n_components=64)
    assert basis.shape == (7, 32)                               # not an 8th, arbitrary direction
    assert torch.allclose(basis @ basis.T, torch.eye(7), atol=1e-5)
    flat = torch.randn(100, 3, generator=gen) @ torch.randn(3, 16, generator=gen)      # rank 3 in 16 channels
    assert G.pca_basis(flat, n_components=10)[1].shape == (3, 16)
    assert G.pca_basis(torch.randn(200, 16, generator=gen), n_components=10)[1].shape == (10, 16)
