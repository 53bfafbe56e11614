"""The Python client against a real server: vectors and images end to end, with the debug-train
set's precision asserted on generated pools, and errors surfacing as DcdError codes."""

import numpy as np
import pytest
from PIL import Image

from dcd_client import Client, DcdError, Item, Key, Labelled, image_folder

DIM = 32


def vector_pool(rng):
    centers = rng.uniform(-4, 4, size=(20, DIM))
    group = rng.uniform(-4, 4, size=DIM)
    rows, keys, labels = [], [], []
    for i in range(2000):
        if i % 10 == 0:
            rows.append(group + rng.uniform(-1, 1, DIM))
            keys.append(f"group/{i}")
        else:
            rows.append(centers[rng.integers(20)] + rng.uniform(-1, 1, DIM))
            keys.append(f"bg/{i}")
        labels.append(["cat", "dog", "car"][rng.integers(3)])
    return np.array(rows, dtype=np.float32), keys, labels, group


def test_vectors_end_to_end(server):
    rng = np.random.default_rng(0)
    vectors, keys, labels, group = vector_pool(rng)
    with Client(server.url) as dcd:
        pool = dcd.create_pool("vecs", dim=DIM)
        assert (pool.dim, pool.items) == (DIM, 0)
        summary = dcd.ingest_vectors("vecs", vectors, keys, labels)
        assert (summary.stored, summary.pool_items) == (2000, 2000)
        errors = group + rng.uniform(-1, 1, size=(6, DIM))
        found = dcd.debug_set("vecs", errors=[errors], k=20)
        precision = sum(k.startswith("group/") for k in found.keys) / len(found.items)
        assert precision >= 0.95, precision
        assert len(found.coverage) == 6 and all(c.kept == 20 for c in found.coverage)
        assert sum(found.label_counts.values()) == len(found.items)
        streamed = dcd.debug_set("vecs", errors=[errors], k=20, stream=True)
        assert streamed.keys == found.keys
        by_mean = dcd.debug_set("vecs", errors=[errors], k=20, merge="mean")
        assert sorted(by_mean.keys) == sorted(found.keys)
        rr = dcd.debug_set("vecs", errors=[errors], k=20, merge="round_robin", budget=12)
        assert len(rr.items) == 12
        assert [m["error_indices"] for m in rr.modes] == [list(range(6))]  # one group, one mode
        agreed = dcd.debug_set("vecs", errors=[errors], k=20, min_support=3)
        assert agreed.items and all(i.support >= 3 for i in agreed.items)
        assert len(agreed.items) == sum(i.support >= 3 for i in found.items)
        # Labelled error samples: items whose weak label the vote does not support are
        # dropped by default, kept and reported with "keep", relabelled with "replace".
        cats = [Labelled(row, "cat") for row in errors]
        judged = dcd.debug_set("vecs", errors=cats, k=20)
        assert judged.label_policy == "drop"
        assert judged.items and all(i.label == "cat" and i.weak_label_plausible for i in judged.items)
        assert len(judged.items) == sum(i.label == "cat" for i in found.items)
        assert judged.funnel["label_policy"] == len(found.items) - len(judged.items)
        kept = dcd.debug_set("vecs", errors=cats, k=20, label_policy="keep")
        assert len(kept.items) == len(found.items)
        assert {i.weak_label_plausible for i in kept.items} == {True, False}
        relabelled = dcd.debug_set("vecs", errors=cats, k=20, label_policy="replace")
        assert all(i.train_label == "cat" for i in relabelled.items)
        assert any(i.suggested_label == "cat" for i in relabelled.items)
        weighted = dcd.debug_set("vecs", errors=[Labelled(errors[0], "cat", 2.5)], k=5)
        assert all(i.label == "cat" for i in weighted.items)
        with pytest.raises(DcdError) as e:
            dcd.debug_set("vecs", errors=[Labelled(errors[0], "cat", -1.0)], k=5)
        assert e.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ValueError):
            dcd.debug_set("vecs", errors=cats, k=5, label_policy="trust")
        # Negatives: the group's own vectors, as handled; its items are vetoed.
        handled = group + rng.uniform(-1, 1, size=(200, DIM))
        vetoed = dcd.debug_set("vecs", errors=[errors], k=20, negatives=[handled])
        assert len(vetoed.items) < len(found.items)
        assert vetoed.funnel["negatives"] == len(vetoed.vetoes) == len(found.items) - len(vetoed.items)
        assert all(v.negative.startswith("negatives[") for v in vetoed.vetoes)
        # A holdout: items identical to held-out ones are kept out, each collision reported.
        held = dcd.debug_set("vecs", errors=[errors], k=20, holdout=[Key(found.items[0].key)])
        assert [c.key for c in held.collisions] == [found.items[0].key]
        assert len(held.items) == len(found.items) - 1 and held.funnel["holdout"] == 1
        near = dcd.debug_set("vecs", errors=[errors], k=20, max_distance_percentile=0.5)
        assert all(i.distance_percentile <= 0.5 for i in near.items)
        spread = dcd.debug_set("vecs", errors=[errors], k=20, dedup_distance=20.0)
        assert 0 < len(spread.items) < len(found.items)
        assert spread.funnel["dedup"] == len(found.items) - len(spread.items)
        by_key = dcd.debug_set("vecs", errors=[Key("group/10")], k=5)
        assert by_key.items[0].key == "group/10" and by_key.items[0].best_distance == 0.0
        hits = dcd.search("vecs", [vectors[3]], k=3)
        assert hits[0][0].key == keys[3]
        assert dcd.get_pool("vecs").items == 2000
        assert [p.name for p in dcd.list_pools()] == ["vecs"]


def test_reference_pool(server):
    """A clean, labelled reference: every item gets its gap, a gap rule drops the near ones,
    and the summary says what was fitted."""
    rng = np.random.default_rng(1)
    vectors, keys, labels, group = vector_pool(rng)
    with Client(server.url) as dcd:
        dcd.create_pool("vecs", dim=DIM)
        dcd.ingest_vectors("vecs", vectors, keys, labels)
        # The model was trained on the background: the reference is background rows with
        # their labels, so the group (the failing slice) is far from it.
        bg = [i for i, k in enumerate(keys) if k.startswith("bg/")][:600]
        dcd.create_pool("train", dim=DIM)
        dcd.ingest_vectors("train", vectors[bg] + rng.uniform(-0.1, 0.1, (len(bg), DIM)),
                           [f"train/{i}" for i in bg], [labels[i] for i in bg])
        errors = group + rng.uniform(-1, 1, size=(6, DIM))
        found = dcd.debug_set("vecs", errors=[errors], k=60, reference_pool="train",
                              label_policy="keep")
        assert all(i.gap is not None and 0.0 <= i.gap_percentile <= 1.0 for i in found.items)
        assert found.reference["pool"] == "train" and found.reference["items"] == 600
        assert found.reference["label_estimate"]["classes"] == ["car", "cat", "dog"]
        far = dcd.debug_set("vecs", errors=[errors], k=60, reference_pool="train",
                            label_policy="keep", min_gap_percentile=0.5)
        assert far.items and all(i.gap_percentile >= 0.5 for i in far.items)
        assert far.funnel["gap"] == sum(i.gap_percentile < 0.5 for i in found.items)
        with pytest.raises(DcdError) as e:
            dcd.debug_set("vecs", errors=[errors], k=5, min_gap_percentile=0.5)
        assert e.value.code == "INVALID_ARGUMENT"


def test_label_caps_targets_and_diversity(server):
    """Caps and targets shape the labels handed to training; diversity reaches past the
    nearest clump; a target the pool cannot meet is reported short."""
    rng = np.random.default_rng(2)
    vectors, keys, labels, group = vector_pool(rng)
    with Client(server.url) as dcd:
        dcd.create_pool("vecs", dim=DIM)
        dcd.ingest_vectors("vecs", vectors, keys, labels)
        errors = group + rng.uniform(-1, 1, size=(6, DIM))
        capped = dcd.debug_set("vecs", errors=[errors], k=40, max_per_label=5,
                               label_caps={"car": 2})
        assert capped.label_counts.get("car", 0) <= 2
        assert all(n <= 5 for n in capped.label_counts.values())
        assert capped.funnel["label_cap"] > 0
        held = dcd.debug_set("vecs", errors=[errors], k=40, budget=12,
                             label_targets={"dog": 4, "ghost": 2})
        assert held.label_counts.get("dog", 0) >= 4
        assert held.label_shortfall == {"ghost": 2}
        plain = dcd.debug_set("vecs", errors=[errors], k=40, budget=12, max_modes=1)
        spread = dcd.debug_set("vecs", errors=[errors], k=40, budget=12, max_modes=1,
                               mmr_lambda=0.3)
        assert len(spread.items) == 12
        assert spread.funnel["diversity"] == len(set(plain.keys) - set(spread.keys))
        with pytest.raises(DcdError) as e:
            dcd.debug_set("vecs", errors=[errors], k=5, label_targets={"dog": 2})
        assert e.value.code == "INVALID_ARGUMENT" and "budget" in str(e.value)


def test_evaluate_a_recipe(server):
    """The model-free evaluation: a curve over ks, labelled failures scored by label, and the
    same recipe keywords as debug_set."""
    rng = np.random.default_rng(3)
    vectors, keys, labels, group = vector_pool(rng)
    with Client(server.url) as dcd:
        dcd.create_pool("vecs", dim=DIM)
        dcd.ingest_vectors("vecs", vectors, keys, labels)
        failures = [Labelled(v, "cat") for v in group + rng.uniform(-1, 1, size=(10, DIM))]
        ev = dcd.evaluate("vecs", failures, ks=[5, 20], exact=True, label_policy="keep")
        assert (ev.folds, ev.scored, ev.labelled) == (5, 10, 10)
        assert [p["k"] for p in ev.points] == [5, 20]
        assert all(p["win_rate"] > 0.8 and p["label_win_rate"] is not None for p in ev.points)
        with pytest.raises(DcdError) as e:
            dcd.evaluate("vecs", failures[:1])
        assert e.value.code == "INVALID_ARGUMENT"
        with pytest.raises(TypeError):
            dcd.evaluate("vecs", failures, no_such_rule=1)


def stripes(rng, side=48):
    period = int(rng.integers(6, 12))
    a = rng.integers(0, 40, 3)
    b = [rng.integers(215, 256), rng.integers(190, 231), rng.integers(0, 40)]
    y, x = np.mgrid[0:side, 0:side]
    on = ((x + y + int(rng.integers(0, period))) // max(period // 2, 1)) % 2 == 0
    return np.where(on[..., None], a, b).astype(np.uint8)


def smooth(rng, side=48):
    c0, c1 = rng.random(3), rng.random(3)
    y, x = np.mgrid[0:side, 0:side] / side
    t = np.clip(x * 0.5 + y * 0.5, 0, 1)[..., None]
    return ((c0 * (1 - t) + c1 * t) * 255).astype(np.uint8)


def test_images_folder_job_and_debug_set(server, tiny_dino):
    rng = np.random.default_rng(1)
    root = server.root / "pool"
    pattern = set()
    for i in range(150):
        label = ["cat", "dog", "car"][rng.integers(3)]
        (root / label).mkdir(parents=True, exist_ok=True)
        path = root / label / f"{i}.png"
        Image.fromarray(stripes(rng) if i < 30 else smooth(rng)).save(path)
        if i < 30:
            pattern.add(str(path.resolve()))
    (root / "cat" / "broken.png").write_bytes(b"not an image")
    errors_dir = server.root / "errors"
    errors_dir.mkdir()
    for i in range(4):
        Image.fromarray(stripes(rng)).save(errors_dir / f"e{i}.png")
    with Client(server.url) as dcd:
        pool = dcd.create_pool("imgs", backbone="dino-vit", weights=tiny_dino)
        updates = []
        job = dcd.ingest_folder("imgs", root, progress=updates.append)
        assert job.state == "succeeded", job
        assert (job.total, job.stored, job.failed) == (151, 150, 1)
        assert any(k.endswith("broken.png") for k, _ in job.errors)
        assert updates
        found = dcd.debug_set("imgs", errors=[errors_dir, b"garbage"], k=8)
        precision = len(pattern.intersection(found.keys)) / len(found.items)
        assert precision >= 0.9, precision
        assert found.coverage[4].error, "the garbage error sample is reported"
        # An ImageFolder of error samples: the subfolder names are their true labels.
        (errors_dir / "dog").mkdir()
        for i in range(2):
            (errors_dir / f"e{i}.png").rename(errors_dir / "dog" / f"e{i}.png")
        samples = image_folder(errors_dir)
        assert sorted(s.label for s in samples) == ["", "", "dog", "dog"]
        mixed = dcd.debug_set("imgs", errors=samples, k=8)
        assert mixed.label_policy == "drop"
        judged = [i for i in mixed.items if i.weak_label_plausible is not None]
        assert judged and all(i.label == "dog" for i in judged)
        vecs = dcd.embed([errors_dir / "dog" / "e0.png", b"nope"], pool="imgs")
        assert vecs.shape == (2, pool.dim) and np.isfinite(vecs[0]).all() and np.isnan(vecs[1]).all()
        one = dcd.ingest("imgs", [Item(key="extra", label="x", image=errors_dir / "e2.png")])
        assert one.stored == 1


def test_errors_are_dcd_errors(server):
    with Client(server.url) as dcd:
        with pytest.raises(DcdError) as e:
            dcd.debug_set("nope", errors=[np.zeros(4)], k=5)
        assert e.value.code == "NOT_FOUND" and "no pool named" in e.value.message
        dcd.create_pool("p", dim=4)
        dcd.ingest_vectors("p", np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
        with pytest.raises(DcdError) as e:
            dcd.debug_set("p", errors=[np.zeros(4)], k=0)
        assert e.value.code == "INVALID_ARGUMENT"
        with pytest.raises(DcdError) as e:
            dcd.debug_set("p", errors=[np.zeros(3)], k=2)
        assert e.value.code == "INVALID_ARGUMENT" and "dimension" in e.value.message
        with pytest.raises(DcdError) as e:
            dcd.ingest_folder("p", "/etc")
        assert e.value.code == "PERMISSION_DENIED"


def test_api_key(server_with_key):
    with Client(server_with_key.url) as dcd:
        with pytest.raises(DcdError) as e:
            dcd.list_pools()
        assert e.value.code == "UNAUTHENTICATED"
    with Client(server_with_key.url, api_key="k3y") as dcd:
        assert dcd.list_pools() == []


def test_saved_sets(server):
    rng = np.random.default_rng(5)
    vectors, keys, labels, group = vector_pool(rng)
    with Client(server.url) as dcd:
        dcd.create_pool("saved", dim=DIM)
        dcd.ingest_vectors("saved", vectors, keys, labels)
        errors = group + rng.uniform(-1, 1, size=(4, DIM))
        first = dcd.debug_set("saved", errors=[errors], k=10, save_as="round-1")
        assert first.saved_as == "round-1"
        second = dcd.debug_set("saved", errors=[errors], k=20, save_as="round-2", parent="round-1")
        assert [s.name for s in dcd.list_debug_sets("saved")] == ["round-2", "round-1"]
        saved = dcd.get_debug_set("round-1")
        assert [i.key for i in saved.items] == first.keys
        assert saved.manifest["pool"]["rows"] == 2000
        assert saved.manifest["request"]["k"] == 10
        assert len(saved.manifest["errors"]) == 4
        assert dcd.get_debug_set("round-2").parent == "round-1"
        d = dcd.diff_debug_sets("round-1", "round-2")
        assert {i.key for i in d.added} == set(second.keys) - set(first.keys)
        assert not d.removed
        with pytest.raises(DcdError) as e:
            dcd.debug_set("saved", errors=[errors], k=5, save_as="round-1")
        assert e.value.code == "ALREADY_EXISTS"
        dcd.delete_debug_set("round-1")
        with pytest.raises(DcdError) as e:
            dcd.get_debug_set("round-1")
        assert e.value.code == "NOT_FOUND"


def test_review_and_the_next_round(server):
    rng = np.random.default_rng(6)
    vectors, keys, labels, group = vector_pool(rng)
    with Client(server.url) as dcd:
        dcd.create_pool("reviewed", dim=DIM)
        dcd.ingest_vectors("reviewed", vectors, keys, labels)
        errors = group + rng.uniform(-1, 1, size=(4, DIM))
        first = dcd.debug_set("reviewed", errors=[errors], k=10, save_as="r1")
        rejected, relabelled = first.keys[:2], first.keys[2]
        assert dcd.review_debug_set("r1", "reject", keys=rejected, reviewer="ann") == 2
        assert dcd.review_debug_set("r1", "relabel", keys=[relabelled], label="fixed") == 1
        rest = dcd.review_debug_set("r1", "accept", all=True, unreviewed_only=True)
        assert rest == len(set(first.keys)) - 3
        with pytest.raises(DcdError) as e:
            dcd.review_debug_set("r1", "accept", keys=["not-in-the-set"])
        assert e.value.code == "NOT_FOUND"
        with pytest.raises(DcdError) as e:
            dcd.review_debug_set("r1", "relabel", keys=[relabelled])
        assert e.value.code == "INVALID_ARGUMENT"
        saved = dcd.get_debug_set("r1")
        marks = {i.key: i.review.verdict for i in saved.items}
        assert marks[rejected[0]] == "reject" and marks[relabelled] == "relabel"
        assert len(dcd.review_history("r1")) == len(set(first.keys))

        # The next round, with the same error samples: nothing reviewed comes back, the
        # rejections are negatives, the acceptances error samples.
        second = dcd.debug_set("reviewed", errors=[errors], k=10, from_set="r1", save_as="r2")
        assert second.round["rejected"] == 2
        assert second.round["accepted"] == len(set(first.keys)) - 2
        assert len(second.coverage) == 4 + second.round["accepted"]
        assert not set(second.keys) & set(first.keys)
        assert dcd.get_debug_set("r2").parent == "r1"
        manifest = dcd.get_debug_set("r2").manifest
        assert [c["key"] for c in manifest["carry"]["rejected"]] == rejected
