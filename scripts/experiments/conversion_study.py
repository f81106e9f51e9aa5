"""Can a trained softmax model be switched to Attention-BN, Attention-SH or BN+SH? The conversion study.

Sources: softmax models trained with the grids' protocols, re-trained here and kept on disk (``--work_dir``):
the mvts-transformer classifier (``reproduce_uea``'s protocol) and transformers' PatchTST (``patchtst_protocol``)
on the six short UEA sets, and the full-budget ViT (``reproduce_images --budget full``) on Fashion-MNIST and
CIFAR-10, seeds 0-2. Each source is converted to ``bn``, ``sh`` and ``bn_sh`` with no other change (the package's
``attention_type`` for its own models; :func:`hf_primaldual.conversion.convert_checkpoint` for PatchTST), and
measured on the test split:

* (a) right after conversion, no training (``finetune_epochs`` 0);
* (b) after fine-tuning for 10% and 30% of the protocol's epochs at a tenth of its learning rate, the protocol's
  optimizer, schedule and batch otherwise;
* (c) the control: the softmax source fine-tuned the same way (extra training alone);
* (d) the type trained from scratch: the grids' cells in ``docs/results/{uea,patchtst,image}_runs.jsonl``.

Selection is by the final epoch, never by test accuracy. The time-series protocols hold the learning rate
constant, so a fine-tune's state after 10 epochs is that of a 10-epoch fine-tune (same data order, same dropout
draws, an optimizer that does not know the run's length): one 30-epoch run measures both, and its per-epoch test
accuracy draws the curve. The ViT's cosine schedule depends on the run's length, so each length is its own run.

Every measured cell is one JSON line in ``--results`` (key: family, dataset, seed, attention_type,
finetune_epochs; ``attention_type`` softmax with 0 epochs is the source itself); a cell already there is skipped,
a source model already on disk is not trained again, and a source cut short resumes from its last checkpoint:

    OMP_NUM_THREADS=1 nohup python scripts/conversion_study.py > study.log 2>&1 &
    python scripts/conversion_study.py --render          # tables, paired comparisons, plots from the records
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import REPO
from .analysis import SHORT_UEA_SETS, mean_std, paired_comparison, read_runs

SOURCE_TYPE = "softmax"
CONVERTED_TYPES = ["bn", "sh", "bn_sh"]
FINETUNE_FRACTIONS = (0.1, 0.3)
LEARNING_RATE_FACTOR = 0.1
ORDER = ["mvts", "patchtst", "vit"]  # within a seed: most valuable first


@dataclass(frozen=True)
class Family:
    """One model family and modality: its protocol and how to train, convert, evaluate and fine-tune it."""

    name: str
    title: str
    datasets: tuple[str, ...]
    epochs: int  # the protocol's
    learning_rate: float  # the protocol's
    constant_schedule: bool  # a fine-tune's epoch-E state equals an E-epoch fine-tune's
    grid_file: str  # the from-scratch cells (d), under --grid_dir
    grid_filter: Callable[[dict, int], bool]  # (record, protocol epochs): a from-scratch cell of this protocol


FAMILIES = {
    "mvts": Family("mvts", "mvts-transformer (this package), UEA", tuple(SHORT_UEA_SETS), 100, 1e-3, True,
                   "uea_runs.jsonl", lambda r, epochs: r.get("epochs") == epochs),
    "patchtst": Family("patchtst", "PatchTST (transformers), UEA", tuple(SHORT_UEA_SETS), 100, 1e-3, True,
                       "patchtst_runs.jsonl", lambda r, epochs: r.get("epochs") == epochs),
    "vit": Family("vit", "ViT 32 px / patch 8, full budget", ("fashion-mnist", "cifar10-jpg"), 10, 1e-3, False,
                  "image_runs.jsonl",
                  lambda r, epochs: r.get("experiment") == "scratch" and r.get("budget") == "full" and r["epochs"] == epochs),
}


def finetune_epochs(protocol_epochs: int, fractions: Sequence[float] = FINETUNE_FRACTIONS) -> list[int]:
    """The fine-tuning lengths: each fraction of the protocol's epochs, at least one epoch, without repeats."""
    return sorted({max(1, round(f * protocol_epochs)) for f in fractions})


def cell_key(record: dict) -> tuple[str, str, int, str, int]:
    return record["family"], record["dataset"], int(record["seed"]), record["attention_type"], int(record["finetune_epochs"])


def head_scales(attention_type: str, num_heads: int) -> list[int] | None:
    """The grids' SH scales: (1, 1, 1, 2, 2, 2, 4, 4) for 8 heads, (1, 2, 4) for the ViT's 3."""
    if not attention_type.endswith("sh"):
        return None
    return {8: [1, 1, 1, 2, 2, 2, 4, 4], 3: [1, 2, 4]}[num_heads]


# ----------------------------------------------------------------------------------------------------------------
# The families' steps: each returns test accuracies; models are folders under the unit's work folder
# ----------------------------------------------------------------------------------------------------------------


class Unit:
    """One (family, dataset, seed): its source model and everything converted or fine-tuned from it."""

    def __init__(self, family: Family, dataset: str, seed: int, args: argparse.Namespace):
        self.family, self.dataset, self.seed, self.args = family, dataset, seed, args
        self.folder = args.work_dir / family.name / f"{dataset}-seed{seed}-{args.epochs or family.epochs}ep"

    @property
    def epochs(self) -> int:
        return self.args.epochs or self.family.epochs

    @property
    def source(self) -> Path:
        return self.folder / "source-softmax"

    def converted(self, attention_type: str) -> Path:
        return self.folder / f"converted-{attention_type}"

    def finetuned(self, attention_type: str, epochs: int) -> Path:
        return self.folder / f"finetuned-{attention_type}-{epochs}ep"

    # -- the steps, dispatched on the family -------------------------------------------------------------------

    def train_source(self) -> dict:
        """Train the softmax source (skipped when its folder is complete); its metrics."""
        return getattr(self, f"_source_{self.family.name}")()

    def convert(self, attention_type: str) -> Path:
        """The source switched to ``attention_type``, saved as a model folder (nothing else changes)."""
        folder = self.converted(attention_type)
        if not (folder / "config.json").is_file():
            getattr(self, f"_convert_{self.family.name}")(attention_type, folder)
        return folder

    def evaluate(self, folder: Path) -> float:
        return getattr(self, f"_evaluate_{self.family.name}")(folder)

    def finetune(self, start: Path, attention_type: str, epochs: int) -> list[float]:
        """Fine-tune the model in ``start`` for ``epochs`` at a tenth of the protocol's learning rate; the test
        accuracy after each epoch (the last: the final model, kept in ``finetuned(attention_type, epochs)``)."""
        return getattr(self, f"_finetune_{self.family.name}")(start, attention_type, epochs)

    # -- mvts-transformer: the grid's command for the source, the package's Trainer path for fine-tunes ----------

    def _source_mvts(self) -> dict:
        from .reproduce_uea import train_once

        if (self.source / "training_metrics.json").is_file():
            return json.loads((self.source / "training_metrics.json").read_text())
        grid_args = argparse.Namespace(work_dir=self.folder, data_dir=self.args.data_dir, epochs=self.epochs,
                                       extra=list(self.args.extra))
        metrics = train_once(self.dataset, SOURCE_TYPE, self.seed, grid_args)
        (self.folder / f"{self.dataset}-{SOURCE_TYPE}-seed{self.seed}-{self.epochs}ep").rename(self.source)
        return metrics

    def _convert_mvts(self, attention_type: str, folder: Path) -> None:
        from transformers import AutoFeatureExtractor

        from hf_primaldual import PrimalDualTimeSeriesForClassification
        from hf_primaldual.training import save_model_and_processor

        source = PrimalDualTimeSeriesForClassification.from_pretrained(self.source)
        model = PrimalDualTimeSeriesForClassification.from_pretrained(
            self.source, attention_type=attention_type,
            head_scales=head_scales(attention_type, source.config.num_attention_heads),
        )
        if model.config.attention_type != attention_type:  # a silently ignored override would measure softmax
            raise RuntimeError(f"{folder}: loaded as {model.config.attention_type}, not {attention_type}")
        save_model_and_processor(model, AutoFeatureExtractor.from_pretrained(self.source), folder)

    def _evaluate_mvts(self, folder: Path) -> float:
        from hf_primaldual.evaluation import evaluate_checkpoint

        return evaluate_checkpoint(folder, self.dataset, data_dir=self.args.data_dir).accuracy

    def _finetune_mvts(self, start: Path, attention_type: str, epochs: int) -> list[float]:
        from transformers import AutoFeatureExtractor

        from hf_primaldual import PrimalDualTimeSeriesForClassification
        from hf_primaldual.data.timeseries import load_timeseries
        from hf_primaldual.training import (
            TimeSeriesTrainingArguments,
            save_model_and_processor,
            timeseries_trainer,
            train_and_test,
        )

        model = PrimalDualTimeSeriesForClassification.from_pretrained(start)
        extractor = AutoFeatureExtractor.from_pretrained(start)
        class_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        splits = load_timeseries(self.dataset, data_dir=self.args.data_dir, class_names=class_names)
        output = self.finetuned(attention_type, epochs)
        training_args = TimeSeriesTrainingArguments(
            output_dir=str(output), num_train_epochs=epochs, seed=self.seed, save_strategy="no", report_to="none",
            learning_rate=LEARNING_RATE_FACTOR * self.family.learning_rate, disable_tqdm=True,
        )
        trainer = timeseries_trainer(model, training_args, splits["train"], splits["test"], extractor)
        metrics = train_and_test(trainer, splits["test"].with_format("numpy"))
        save_model_and_processor(trainer.model, extractor, output)
        return [entry["eval_accuracy"] for entry in metrics["eval_history"]]

    # -- PatchTST: the grid's protocol function; the package's conversion module writes the converted checkpoint -

    def _patchtst_run(self, attention_type: str, epochs: int, model=None, learning_rate=None, save_to=None) -> dict:
        from .patchtst_protocol import train_patchtst

        return train_patchtst(self.dataset, attention_type, self.seed, self.folder / "trainer", data_dir=self.args.data_dir,
                              epochs=epochs, model=model, learning_rate=learning_rate or self.family.learning_rate,
                              save_to=save_to)

    def _source_patchtst(self) -> dict:
        marker = self.source / "source_metrics.json"
        if marker.is_file():
            return json.loads(marker.read_text())
        record = self._patchtst_run(SOURCE_TYPE, self.epochs, save_to=self.source)
        marker.write_text(json.dumps(record) + "\n")
        return record

    def _load_patchtst(self, folder: Path):
        import hf_primaldual  # noqa: F401  (registers primaldual_<type>, which a converted config.json names)
        from transformers import PatchTSTForClassification

        return PatchTSTForClassification.from_pretrained(folder)

    def _convert_patchtst(self, attention_type: str, folder: Path) -> None:
        from hf_primaldual.conversion import convert_checkpoint

        convert_checkpoint(self.source, attention_type, folder)
        loaded = self._load_patchtst(folder).config._attn_implementation
        if loaded != f"primaldual_{attention_type}":  # a silently dropped attention would measure softmax
            raise RuntimeError(f"{folder}: loads with {loaded}, not primaldual_{attention_type}")

    def _evaluate_patchtst(self, folder: Path) -> float:
        return self._patchtst_run("evaluation", 0, model=self._load_patchtst(folder))["test_accuracy_final"]

    def _finetune_patchtst(self, start: Path, attention_type: str, epochs: int) -> list[float]:
        record = self._patchtst_run(attention_type, epochs, model=self._load_patchtst(start),
                                    learning_rate=LEARNING_RATE_FACTOR * self.family.learning_rate,
                                    save_to=self.finetuned(attention_type, epochs))
        return record["eval_history"]

    # -- ViT: the image grid's command, for the source and (with --model_name_or_path) the fine-tunes -----------

    def _image_args(self, epochs: int) -> argparse.Namespace:
        return argparse.Namespace(epochs=epochs, budget="full", train_samples=None, test_samples=None)

    @property
    def _image_data(self) -> Path:
        from .reproduce_images import DATASETS

        return self.args.image_root / DATASETS[self.dataset]

    def _source_vit(self) -> dict:
        from .reproduce_images import BUDGETS, MODEL, train

        if (self.source / "training_metrics.json").is_file():
            return json.loads((self.source / "training_metrics.json").read_text())
        return train(self._image_data, self.source, self.seed, self._image_args(self.epochs), "--attention_type",
                     SOURCE_TYPE, "--patch_size", str(BUDGETS["full"].patch_size), *MODEL, *self.args.extra)

    def _convert_vit(self, attention_type: str, folder: Path) -> None:
        from transformers import AutoImageProcessor

        from hf_primaldual import PrimalDualViTForImageClassification

        source = PrimalDualViTForImageClassification.from_pretrained(self.source)
        model = PrimalDualViTForImageClassification.from_pretrained(
            self.source, attention_type=attention_type,
            head_scales=head_scales(attention_type, source.config.num_attention_heads),
        )
        if model.config.attention_type != attention_type:
            raise RuntimeError(f"{folder}: loaded as {model.config.attention_type}, not {attention_type}")
        model.save_pretrained(folder)
        AutoImageProcessor.from_pretrained(self.source).save_pretrained(folder)

    def _evaluate_vit(self, folder: Path) -> float:
        from hf_primaldual.evaluation import evaluate_checkpoint

        return evaluate_checkpoint(folder, str(self._image_data), batch_size=256).accuracy

    def _finetune_vit(self, start: Path, attention_type: str, epochs: int) -> list[float]:
        from .reproduce_images import train

        scales = head_scales(attention_type, 3)
        metrics = train(self._image_data, self.finetuned(attention_type, epochs), self.seed, self._image_args(epochs),
                        "--model_name_or_path", str(start), "--attention_type", attention_type,
                        *(["--head_scales", *map(str, scales)] if scales else []),
                        "--learning_rate", str(LEARNING_RATE_FACTOR * self.family.learning_rate))
        return [entry["eval_accuracy"] for entry in metrics["eval_history"]]


# ----------------------------------------------------------------------------------------------------------------
# The study: the cells of each unit, in order, skipping the recorded ones
# ----------------------------------------------------------------------------------------------------------------


def run_unit(unit: Unit, types: Sequence[str], done: set, record: Callable[[dict], None]) -> None:
    """Measure every missing cell of ``unit``: the source, (a) for each type, then (b) and (c)."""
    family, lengths = unit.family, finetune_epochs(unit.epochs, unit.args.fractions)
    base = {"family": family.name, "dataset": unit.dataset, "seed": unit.seed, "protocol_epochs": unit.epochs}

    def missing(attention_type: str, epochs: int) -> bool:
        return (family.name, unit.dataset, unit.seed, attention_type, epochs) not in done

    if not any(missing(t, e) for t in [SOURCE_TYPE, *types] for e in [0, *lengths]):
        return
    started = time.time()
    metrics = unit.train_source()
    if missing(SOURCE_TYPE, 0):
        record({**base, "attention_type": SOURCE_TYPE, "finetune_epochs": 0, "learning_rate": None,
                "test_accuracy_final": metrics["test_accuracy_final"], "wall_s": round(time.time() - started, 1),
                "role": "source"})
    for attention_type in types:
        if missing(attention_type, 0):
            started = time.time()
            accuracy = unit.evaluate(unit.convert(attention_type))
            record({**base, "attention_type": attention_type, "finetune_epochs": 0, "learning_rate": None,
                    "test_accuracy_final": accuracy, "wall_s": round(time.time() - started, 1), "role": "converted"})
    # the control last: the converted types' fine-tunes are the study's question
    for attention_type in [*types, SOURCE_TYPE]:
        todo = [e for e in lengths if missing(attention_type, e)]
        if not todo:
            continue
        start = unit.source if attention_type == SOURCE_TYPE else unit.convert(attention_type)
        runs = [max(todo)] if family.constant_schedule else todo
        for epochs in runs:
            started = time.time()
            history = unit.finetune(start, attention_type, epochs)
            measured = [e for e in todo if e <= epochs] if family.constant_schedule else [epochs]
            for length in measured:
                record({**base, "attention_type": attention_type, "finetune_epochs": length,
                        "learning_rate": LEARNING_RATE_FACTOR * family.learning_rate,
                        "test_accuracy_final": history[length - 1], "eval_history": history[:length],
                        "wall_s": round(time.time() - started, 1),
                        "role": "control" if attention_type == SOURCE_TYPE else "finetuned"})


def plan(families: Sequence[str], seeds: Sequence[int], datasets: Sequence[str] | None) -> list[tuple[str, str, int]]:
    """(family, dataset, seed) in the order of value: every family's first seed before any second seed."""
    return [(f, d, s) for s in seeds for f in ORDER if f in families for d in FAMILIES[f].datasets
            if datasets is None or d in datasets]


# ----------------------------------------------------------------------------------------------------------------
# Rendering: tables, paired comparisons, curves
# ----------------------------------------------------------------------------------------------------------------


def scratch_runs(family: Family, grid_dir: Path, epochs: int) -> dict[tuple[str, str, int], float]:
    """(d): the grid's from-scratch final-epoch accuracy per (dataset, attention_type, seed), for runs of
    ``epochs`` epochs (the sources')."""
    return {(r["dataset"], r["attention_type"], int(r["seed"])): r["test_accuracy_final"]
            for r in read_runs(grid_dir / family.grid_file) if family.grid_filter(r, epochs)}


def _fmt(values: Sequence[float]) -> str:
    if not values:
        return "–"
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.1f} (1)" if len(values) == 1 else f"{mean:.1f} ± {std:.1f} ({len(values)})"


def render_table(records: Sequence[dict], family: Family, scratch: dict, types: Sequence[str]) -> str:
    """Markdown: per dataset and type, mean ± std (seeds) of the test accuracy (%) after conversion, after each
    fine-tuning length, and from scratch; the softmax row is the source and the control."""
    lengths = sorted({r["finetune_epochs"] for r in records if r["finetune_epochs"] > 0})
    cells: dict[tuple, list[float]] = defaultdict(list)
    seeds: dict[str, set[int]] = defaultdict(set)
    for r in records:
        cells[r["dataset"], r["attention_type"], r["finetune_epochs"]].append(r["test_accuracy_final"])
        seeds[r["dataset"]].add(int(r["seed"]))
    header = ["dataset", "type", "converted, no training", *[f"fine-tuned {e} ep" for e in lengths],
              "from scratch (grid)"]
    lines = [f"### {family.title}: test accuracy (%), final epoch, mean ± std over seeds (seeds)", "",
             "softmax row: the source (first column) and the control, the source fine-tuned the same way.", "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for dataset in family.datasets:
        if dataset not in seeds:
            continue
        for attention_type in [SOURCE_TYPE, *types]:
            scratch_values = [scratch[dataset, attention_type, s] for s in sorted(seeds[dataset])
                              if (dataset, attention_type, s) in scratch]
            row = [dataset, attention_type, *[_fmt(cells[dataset, attention_type, e]) for e in [0, *lengths]],
                   _fmt(scratch_values)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _pseudo_runs(pairs: Iterable[tuple[str, int, str, float]]) -> list[dict]:
    return [{"dataset": d, "seed": s, "attention_type": t, "test_accuracy_final": a} for d, s, t, a in pairs]


def paired_rows(records: Sequence[dict], scratch: dict, types: Sequence[str]) -> list[dict]:
    """(b) against (c) and (b) against (d), per type and fine-tuning length, paired over (dataset, seed), with
    the grid's paired statistics (`analysis.paired_comparison`)."""
    accuracy = {(r["dataset"], int(r["seed"]), r["attention_type"], r["finetune_epochs"]): r["test_accuracy_final"]
                for r in records}
    lengths = sorted({e for *_, e in accuracy if e > 0})
    rows = []
    for epochs in [0, *lengths]:
        # (b) vs (c): the converted type against softmax fine-tuned as long (at 0 epochs: against the source)
        runs = _pseudo_runs((d, s, t, a) for (d, s, t, e), a in accuracy.items() if e == epochs)
        for row in paired_comparison(runs, types, baseline=SOURCE_TYPE):
            rows.append({**row, "comparison": "converted vs softmax control", "finetune_epochs": epochs})
        for attention_type in types:  # (b) vs (d)
            runs = _pseudo_runs((d, s, "converted", a) for (d, s, t, e), a in accuracy.items()
                                if t == attention_type and e == epochs)
            runs += _pseudo_runs((d, s, "scratch", scratch[d, t, s]) for (d, s, t, e) in accuracy
                                 if t == attention_type and e == epochs and (d, t, s) in scratch)
            for row in paired_comparison(runs, ["converted"], baseline="scratch"):
                rows.append({**row, "attention_type": attention_type, "comparison": "converted vs from scratch",
                             "finetune_epochs": epochs})
    return rows


def render_paired(rows: Sequence[dict], family: Family) -> str:
    lines = [f"### {family.title}: paired over (dataset, seed), accuracy difference (points), final epoch", "",
             "| comparison | type | fine-tuning epochs | pairs (sets) | wins / ties / losses | "
             "mean difference [95% interval] | Wilcoxon p |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row["pairs"]:
            continue
        interval = "–" if row["ci95"] is None else f"[{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}]"
        p = "–" if row["wilcoxon_p"] is None else f"{row['wilcoxon_p']:.3f}"
        lines.append(f"| {row['comparison']} | {row['attention_type']} | {row['finetune_epochs']} | {row['pairs']} "
                     f"({row['datasets']}) | {row['wins']} / {row['ties']} / {row['losses']} | "
                     f"{row['mean_difference']:+.2f} {interval} | {p} |")
    return "\n".join(lines) + "\n"


def plot_curves(records: Sequence[dict], family: Family, scratch: dict, types: Sequence[str], path: Path) -> Path | None:
    """One panel per dataset: mean test accuracy over seeds against fine-tuning epochs, one line per type (0: right
    after conversion; softmax: the control), dashed: the type from scratch (the grid's mean over the same seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in family.datasets if any(r["dataset"] == d for r in records)]
    if not datasets:
        return None
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(max(6.0, 4.2 * columns), 3.2 * rows + 0.7), squeeze=False)
    colours = dict(zip([SOURCE_TYPE, *CONVERTED_TYPES], ["black", "tab:blue", "tab:orange", "tab:green"]))
    for axes, dataset in zip(grid.flat, datasets):
        for attention_type in [SOURCE_TYPE, *types]:
            mine = [r for r in records if r["dataset"] == dataset and r["attention_type"] == attention_type]
            curve: dict[int, list[float]] = defaultdict(list)
            for r in mine:  # the longest fine-tune's per-epoch history, and the single points of the others
                if r["finetune_epochs"] == 0:
                    curve[0].append(r["test_accuracy_final"])
                elif family.constant_schedule:
                    longest = max(x["finetune_epochs"] for x in mine if x["seed"] == r["seed"])
                    if r["finetune_epochs"] == longest:
                        for epoch, value in enumerate(r["eval_history"], start=1):
                            curve[epoch].append(value)
                else:
                    curve[r["finetune_epochs"]].append(r["test_accuracy_final"])
            if not curve:
                continue
            epochs = sorted(curve)
            label = "softmax (control)" if attention_type == SOURCE_TYPE else attention_type
            axes.plot(epochs, [100 * np.mean(curve[e]) for e in epochs], color=colours.get(attention_type),
                      marker="" if family.constant_schedule else "o", label=label)
            seeds = sorted({int(r["seed"]) for r in mine})
            from_scratch = [scratch[dataset, attention_type, s] for s in seeds if (dataset, attention_type, s) in scratch]
            if from_scratch:
                axes.axhline(100 * np.mean(from_scratch), color=colours.get(attention_type), linestyle="--",
                             linewidth=0.8)
        axes.set_title(dataset, fontsize=9)
        axes.set_xlabel("fine-tuning epochs (lr / 10)", fontsize=8)
        axes.set_ylabel("test accuracy (%)", fontsize=8)
    for axes in list(grid.flat)[len(datasets):]:
        axes.axis("off")
    grid.flat[0].legend(fontsize=7)
    figure.suptitle(f"{family.title}\nsoftmax model converted (epoch 0), then fine-tuned; dashed: the type from "
                    "scratch", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def render(records: Sequence[dict], report_dir: Path, grid_dir: Path, types: Sequence[str]) -> str:
    """Write ``conversion_table.md`` (tables and paired comparisons of every family with records) and
    ``conversion_<family>_curves.png`` into ``report_dir``; return the markdown."""
    report_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in ORDER:
        family = FAMILIES[name]
        mine = [r for r in records if r["family"] == name]
        if not mine:
            continue
        epochs = {r["protocol_epochs"] for r in mine}
        if len(epochs) > 1:
            raise ValueError(f"{name}: records of sources trained {sorted(epochs)} epochs; render one length at a time")
        scratch = scratch_runs(family, grid_dir, epochs.pop())
        parts += [render_table(mine, family, scratch, types), render_paired(paired_rows(mine, scratch, types), family)]
        plot_curves(mine, family, scratch, types, report_dir / f"conversion_{name}_curves.png")
    text = "\n".join(parts)
    (report_dir / "conversion_table.md").write_text(text)
    return text


def conversion_head_redundancy(args: argparse.Namespace, records: Sequence[dict], types: Sequence[str]) -> str:
    """Head redundancy (`analysis.head_redundancy`) of every mvts unit on disk whose fine-tunes are done: the source,
    each converted model right after conversion and after its longest fine-tune, and the control. Writes
    ``<dataset>-seed<seed>.json`` / ``.png`` and ``head_redundancy.md`` (all units) into ``args.redundancy_dir``;
    returns the markdown. A unit whose JSON already holds all its models is read back, not measured again (delete
    the JSON to measure it again)."""
    from hf_primaldual.evaluation import load_checkpoint_data

    from .analysis import head_redundancy, plot_head_redundancy

    accuracy = {(r["dataset"], int(r["seed"]), r["attention_type"], r["finetune_epochs"]): r["test_accuracy_final"]
                for r in records if r["family"] == "mvts"}
    args.redundancy_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for _, dataset, seed in plan(["mvts"], args.seeds, args.datasets):
        unit = Unit(FAMILIES["mvts"], dataset, seed, args)
        longest = finetune_epochs(unit.epochs, args.fractions)[-1]
        models = [("softmax source", unit.source, (SOURCE_TYPE, 0))]
        for attention_type in types:
            models += [(f"{attention_type}, converted", unit.converted(attention_type), (attention_type, 0)),
                       (f"{attention_type}, fine-tuned {longest} ep", unit.finetuned(attention_type, longest),
                        (attention_type, longest))]
        models.append((f"softmax control, fine-tuned {longest} ep", unit.finetuned(SOURCE_TYPE, longest),
                       (SOURCE_TYPE, longest)))
        if not all((folder / "config.json").is_file() for _, folder, _ in models):
            continue
        name = f"{dataset}-seed{seed}"
        measured = args.redundancy_dir / f"{name}.json"
        results = json.loads(measured.read_text()) if measured.is_file() else {}
        if set(results) != {label for label, _, _ in models}:
            results = {}
            for label, folder, _ in models:
                data = load_checkpoint_data(folder, dataset, data_dir=args.data_dir, batch_size=32)
                results[label] = head_redundancy(data, args.max_examples)
            measured.write_text(json.dumps(results, indent=2) + "\n")
            plot_head_redundancy(results, args.redundancy_dir / f"{name}.png",
                                 title=f"Head redundancy, {dataset} seed {seed}: softmax converted")
        layers = len(next(iter(results.values()))["mean"])
        if not lines:
            lines = ["| dataset (seed) | model | test accuracy | " + " | ".join(f"layer {i + 1}" for i in range(layers))
                     + " |", "|---|---|---|" + "---|" * layers]
        for label, _, (attention_type, epochs) in models:
            score = accuracy.get((dataset, seed, attention_type, epochs))
            cells = [f"{m:.3f} ± {d:.3f}" for m, d in zip(results[label]["mean"], results[label]["std"])]
            lines.append(f"| {dataset} ({seed}) | {label} | {'–' if score is None else f'{100 * score:.1f}%'} | "
                         + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (args.redundancy_dir / "head_redundancy.md").write_text(text)
    return text


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Run the missing cells, then render; 0. ``root``: where the default paths lie (default: the repository)."""
    root = REPO if root is None else root
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=ORDER, choices=ORDER)
    parser.add_argument("--datasets", nargs="+", default=None, help="only these (default: each family's own)")
    parser.add_argument("--types", nargs="+", default=CONVERTED_TYPES, choices=CONVERTED_TYPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="the sources' epochs (default: each protocol's)")
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FINETUNE_FRACTIONS),
                        help="fine-tuning lengths as fractions of the protocol's epochs")
    parser.add_argument("--data_dir", type=Path, default=root.parent / "shared" / "data" / "uea")
    parser.add_argument("--image_root", type=Path, default=root.parent / "shared" / "data" / "images")
    parser.add_argument("--results", type=Path, default=root / "docs" / "results" / "conversion_runs.jsonl")
    parser.add_argument("--report_dir", type=Path, default=root / "docs" / "results")
    parser.add_argument("--grid_dir", type=Path, default=root / "docs" / "results",
                        help="the grids' records: the from-scratch cells (d)")
    parser.add_argument("--work_dir", type=Path, default=root.parent / "study_models",
                        help="the source models and their conversions and fine-tunes, one folder per unit")
    parser.add_argument("--render", action="store_true", help="only render the tables and plots")
    parser.add_argument("--head_redundancy", action="store_true",
                        help="only measure the head redundancy of the mvts units on disk (source, converted, fine-tuned)")
    parser.add_argument("--redundancy_dir", type=Path,
                        default=root / "docs" / "results" / "head_redundancy_conversion")
    parser.add_argument("--max_examples", type=int, default=300, help="test inputs per model for head redundancy")
    parser.add_argument("extra", nargs="*", help="after --: further arguments for the sources' training commands")
    args = parser.parse_args(argv)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    if args.head_redundancy:
        print(conversion_head_redundancy(args, read_runs(args.results), args.types))
        return 0
    if not args.render:
        done = {cell_key(r) for r in read_runs(args.results)}

        def record(entry: dict) -> None:
            with args.results.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            done.add(cell_key(entry))
            print(json.dumps({k: v for k, v in entry.items() if k != "eval_history"}), flush=True)

        units = plan(args.families, args.seeds, args.datasets)
        print(f"{len(done)} cells in {args.results}; {len(units)} units (family, dataset, seed) to check", flush=True)
        for index, (name, dataset, seed) in enumerate(units, start=1):
            print(f"[{index}/{len(units)}] {name} {dataset} seed {seed}", flush=True)
            run_unit(Unit(FAMILIES[name], dataset, seed, args), args.types, done, record)
    records = [r for r in read_runs(args.results) if args.epochs is None or r["protocol_epochs"] == args.epochs]
    print(render(records, args.report_dir, args.grid_dir, args.types))
    return 0


__all__ = ["FAMILIES", "Unit", "conversion_head_redundancy", "finetune_epochs", "main", "paired_rows", "plan", "render", "run_unit"]
