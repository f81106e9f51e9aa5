"""Serve the demo app of a checkpoint, or publish it as a Hugging Face Space.

    hf-primaldual-demo outputs/timeseries-JapaneseVowels-bn                 # http://127.0.0.1:7860
    hf-primaldual-demo your-name/jv-bn --port 7861 --trust_remote_code      # a Hub model, with its own code
    hf-primaldual-demo your-name/jv-bn --space your-name/jv-bn-demo         # write and push the Space
    hf-primaldual-demo your-name/jv-bn --space your-name/jv-bn-demo --space_folder space --dry_run

The checkpoint is a local folder or a Hub id of either family (the time-series classifier, or an image classifier:
the package's ViT or a stock one running a primal-dual attention). A series file is read as the training reads it;
the reader options (--label_column, --series_id_column, --time_column, --value_columns, --layout, --array_layout)
are the training command's. The app needs the demo extra: pip install hf-primaldual[demo].

Exit status: 0 served until stopped, or the Space pushed (or written, --dry_run); 1 the Hub push failed (the message
says why and what to do); 2 the checkpoint or the arguments are refused, or Gradio is missing.
"""

from __future__ import annotations

import argparse
import sys

from hf_primaldual.demo import DemoError, build_demo, push_space, require_gradio, write_space


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Classify uploaded series or images with a checkpoint and show each head's attention (Gradio).",
    )
    parser.add_argument("checkpoint", help="a local model folder or a Hub model id")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub checkpoint")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="run the model code saved with the checkpoint instead of the installed package's")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860, or the next free)")
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--examples", nargs="+", default=[], help="series files shown as examples to click")
    reader = parser.add_argument_group("reading a series file (as the training command reads its data)")
    reader.add_argument("--label_column", default="label")
    reader.add_argument("--series_id_column", default=None)
    reader.add_argument("--time_column", default=None)
    reader.add_argument("--value_columns", nargs="+", default=None)
    reader.add_argument("--layout", choices=("long", "nested", "wide"), default=None)
    reader.add_argument("--array_layout", choices=("NTC", "NCT"), default=None)
    space = parser.add_argument_group("publishing a Space")
    space.add_argument("--space", default=None, metavar="REPO_ID",
                       help="write the Space of the Hub model CHECKPOINT and push it to this Space repo")
    space.add_argument("--space_folder", default=None, help="write the Space folder here (default: a temporary one)")
    space.add_argument("--private", action="store_true", help="create the Space private")
    space.add_argument("--dry_run", action="store_true", help="with --space_folder: write the Space, push nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reader = {name: getattr(args, name) for name in
              ("label_column", "series_id_column", "time_column", "value_columns", "layout", "array_layout")}
    reader = {name: value for name, value in reader.items()  # only what differs from read_series_file's defaults
              if value is not None and (name, value) != ("label_column", "label")}
    try:
        require_gradio()
        if args.space is not None:
            return _space(args, reader)
        app = build_demo(args.checkpoint, revision=args.revision, trust_remote_code=args.trust_remote_code,
                         reader_options=reader, examples=args.examples)
    except (DemoError, ImportError) as err:
        print(f"hf-primaldual-demo: {err}", file=sys.stderr)
        return 2
    app.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0


def _space(args: argparse.Namespace, reader: dict) -> int:
    from hf_primaldual.hub import HubPushError, PushArgumentError

    if args.dry_run:
        if args.space_folder is None:
            print("hf-primaldual-demo: --dry_run writes the Space only: give --space_folder.", file=sys.stderr)
            return 2
        folder = write_space(args.checkpoint, args.space_folder, space=args.space, revision=args.revision,
                             reader_options=reader)
        print(f"Wrote the Space of {args.checkpoint} in {folder}; nothing was pushed.")
        return 0
    try:
        commit = push_space(args.checkpoint, args.space, folder=args.space_folder, revision=args.revision,
                            reader_options=reader, private=args.private)
    except PushArgumentError as err:
        print(f"hf-primaldual-demo: {err}", file=sys.stderr)
        return 2
    except HubPushError as err:
        print(f"hf-primaldual-demo: {err}", file=sys.stderr)
        return 1
    print(f"Pushed the Space of {args.checkpoint} to {args.space}: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
