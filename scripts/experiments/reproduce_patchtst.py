"""Does Attention-BN help another architecture? transformers' own `PatchTSTForClassification` with softmax,
Attention-BN and BN+SH on this package's UEA protocol (`experiments.patchtst_protocol` says how), on the six
short sets x 3 seeds, then the table and paired comparison rendered beside the mvts grid's.

Each finished run is appended to a JSON-lines results file and skipped when already there, so the grid resumes:

    nohup python scripts/reproduce_patchtst.py > patchtst.log 2>&1 &
    python scripts/reproduce_patchtst.py --render_only        # the table and plot from the runs so far

"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import REPO
from .analysis import SHORT_UEA_SETS, read_runs, render_accuracy_table, render_paired_comparison
from .patchtst_protocol import PATCHTST_ATTENTIONS, train_patchtst


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Run what is missing, then render; 0. ``root``: where the default paths lie (default: the working directory;
    scripts/reproduce_patchtst.py passes the repository)."""
    root = REPO if root is None else root
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=root.parent / "shared" / "data" / "uea")
    parser.add_argument("--datasets", nargs="+", default=SHORT_UEA_SETS)
    parser.add_argument("--types", nargs="+", default=list(PATCHTST_ATTENTIONS), choices=list(PATCHTST_ATTENTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--results", type=Path, default=root / "docs" / "results" / "patchtst_runs.jsonl")
    parser.add_argument("--report_dir", type=Path, default=root / "docs" / "results")
    parser.add_argument("--work_dir", type=Path, default=root / "outputs" / "reproduce_patchtst")
    parser.add_argument("--render_only", action="store_true", help="only render the table and plot")
    args = parser.parse_args(argv)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    runs = read_runs(args.results)
    done = {(r["dataset"], r["attention_type"], r["seed"], r["epochs"]) for r in runs}
    todo = [(d, t, s) for s in args.seeds for d in args.datasets for t in args.types if (d, t, s, args.epochs) not in done]
    if not args.render_only:
        print(f"{len(runs)} runs in {args.results}; {len(todo)} to go", flush=True)
        for index, (dataset, attention_type, seed) in enumerate(todo, start=1):
            print(f"[{index}/{len(todo)}] PatchTST {dataset} {attention_type} seed {seed}", flush=True)
            record = train_patchtst(dataset, attention_type, seed, args.work_dir / f"{dataset}-{attention_type}-{seed}",
                                    data_dir=args.data_dir, epochs=args.epochs, device=args.device)
            with args.results.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            runs.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "eval_history"}), flush=True)
    runs = [r for r in runs if r["epochs"] == args.epochs]
    title = "UEA, PatchTST (transformers) on the mvts protocol"
    print(render_accuracy_table(runs, args.report_dir, name="patchtst", datasets=args.datasets, types=args.types,
                                title=title))
    print(render_paired_comparison(runs, args.report_dir, name="patchtst", types=args.types,
                                   datasets=args.datasets, title=title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
