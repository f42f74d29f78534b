"""The `gfpose` command line. Bad input ends in one clear line and a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CliError(Exception):
    pass


def _cmd_train(args):
    import numpy as np

    from gfpose_core.data import DATA_DIR, build_takes, cmu_split, training_takes
    from gfpose_core.prior.train import TrainConfig, Trainer

    sets = []
    if args.data and args.no_share_alike:
        raise CliError("--no-share-alike chooses among the default sets; with --data you name the files yourself")
    if sum(map(bool, (args.effectors, args.body_mean, args.motion, args.posterior_mean))) > 1:
        raise CliError("--effectors, --body-mean, --motion and --posterior-mean each train a network of their own: "
                       "name one")
    if args.known_noise and not args.posterior_mean:
        raise CliError("--known-noise is for --posterior-mean training (the score model conditions on noised poses "
                       "already)")
    if args.motion:
        from gfpose_core.motion.train import MotionTrainConfig
        cfg = MotionTrainConfig(steps=args.steps, batch=args.batch or 64, lr=args.lr, seed=args.seed,
                                max_minutes=args.minutes)
        cfg.model.hidden, cfg.model.blocks = args.hidden or 192, args.blocks or 8
        cfg.model.embed, cfg.model.frames = args.embed, args.frames
    else:
        cfg = TrainConfig(steps=args.steps, batch=args.batch or 512, lr=args.lr, seed=args.seed,
                          max_minutes=args.minutes)
        cfg.model.hidden, cfg.model.embed, cfg.model.blocks = args.hidden or 768, args.embed, args.blocks or 2
        if args.effectors or args.body_mean:
            cfg.model.hidden, cfg.model.blocks = args.hidden or 1024, args.blocks or 3
        cfg.known_noise = args.known_noise
        cfg.proportions = args.proportions
    if args.data:
        files = []
        for d in args.data:
            p = Path(d)
            files += sorted(p.rglob("*.bvh*")) if p.is_dir() else [p]
        if not files:
            raise CliError(f"no BVH files in {' '.join(args.data)}")
        if any("bandai" in str(f).lower() for f in files):
            print("warning: Bandai-Namco data is CC BY-NC-ND: weights trained on it must not be shipped",
                  file=sys.stderr)
        takes = build_takes(files, cmu_split, drop_first=False, name="custom")
        note = f"{len(files)} BVH files from {', '.join(args.data)}"
    else:
        try:
            takes, sets = training_takes(DATA_DIR, share_alike=not args.no_share_alike)
        except FileNotFoundError as e:
            raise CliError(str(e)) from None
        note = ("; ".join(s["licence"] for s in sets) + ". Every clip of ../shared/data/"
                + " and ../shared/data/".join(s["name"] for s in sets)
                + ", training split only (CMU test subjects 6, 13, 94 and validation subjects 8, 14"
                + (", HDM05 validation actor mm" if len(sets) > 1 else "") + " held out), 30 fps, with mirror copies")
    device = args.device
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.motion:
        trainer = _motion_trainer(cfg, takes, args.out, note, device)
        what = f"{len(trainer.train_rel)} windows of {cfg.model.frames} frames (mirrored included)"
    else:
        train = takes["joints"][takes["split"] == "train"]
        val = takes["joints"][takes["split"] == "val"]
        if len(val) == 0:
            rng = np.random.default_rng(0)
            pick = rng.random(len(train)) < 0.05
            train, val = train[~pick], train[pick]
        space = None
        if args.posterior_mean:
            from gfpose_core.prior.train_mean import PosteriorMeanTrainer as Trainer
            space = _score_space(args.space_of)
        elif args.effectors or args.body_mean:
            if args.effectors:
                from gfpose_core.prior.effector_net import trainer_class
            else:
                from gfpose_core.prior.body_mean import trainer_class
            Trainer = trainer_class()
            space = _score_space(args.space_of)
        trainer = Trainer(cfg, train, val, args.out, data_note=note, device=device, space=space)
        what = f"{len(train)} poses (x2 mirrored), validating on {len(val)}"
    # Which sets the weights saw, with their licences, so each weight file's licence can be stated.
    trainer.datasets = sets
    if args.init:
        trainer.warm_start(args.init, fresh_output=args.fresh_output)
    if trainer.rank == 0:
        print(f"training {trainer.n_params / 1e6:.2f} M parameters on {what}; writing {args.out}", flush=True)

    def report(step, total, loss, val_loss):
        print(f"step {step}/{total} loss {loss:.4f} val {val_loss:.4f} "
              f"({trainer.elapsed / 60:.1f} min)", flush=True)

    result = trainer.train(progress=report)
    if trainer.rank == 0:
        print(f"done: best validation loss {result['best_val']:.4f} at step {result['best_step']}; "
              f"weights in {args.out}/model.safetensors", flush=True)


def _score_space(folder):
    """The pose space of the score model a posterior-mean network will sit beside (default: the shipped one)."""
    import json

    from gfpose_core.engine import WEIGHTS_DIR
    from gfpose_core.prior.pose_space import PoseSpace
    path = Path(folder or WEIGHTS_DIR) / "config.json"
    try:
        return PoseSpace.from_dict(json.loads(path.read_text())["space"])
    except (OSError, ValueError, KeyError) as e:
        raise CliError(f"--space-of: {path} is not a score model's config.json ({e})") from None


def _motion_trainer(cfg, takes: dict, out: str, note: str, device: str):
    import numpy as np

    from gfpose_core.motion.train import MotionTrainer, split_clips
    train, val = split_clips(takes, "train"), split_clips(takes, "val")
    if len(val["joints"]) == 0:
        # whole clips held out: every 20th clip of the training set validates
        clips = np.unique(train["clip"])
        held = np.isin(train["clip"], clips[::20])
        val = {k: v[held] for k, v in train.items()}
        train = {k: v[~held] for k, v in train.items()}
    return MotionTrainer(cfg, train, val, out, data_note=note, device=device)


def _engine(args):
    from gfpose_core.engine import Engine
    try:
        return Engine.load(args.weights, device=args.device)
    except RuntimeError as e:  # e.g. CUDA asked for but absent
        raise CliError(str(e).splitlines()[0]) from None


def _read_json(path: str) -> dict:
    import json
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CliError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise CliError(f"{path}: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a JSON object")
    return data


def _nested(data: dict, key: str, path: str, width: int = 3):
    import numpy as np
    if key not in data:
        raise CliError(f"{path}: no \"{key}\" field")
    try:
        arr = np.array(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise CliError(f"{path}: \"{key}\" must be a (N, 24, {width}) array of numbers or null") from None
    return arr


def _write_json(path: str, payload: dict):
    import json
    try:
        text = json.dumps(payload, allow_nan=False)   # NaN is not JSON: a reader elsewhere would choke on it
    except ValueError:
        raise CliError(f"the result for {path} is not finite for this input (joints too close together or too far "
                       "apart?): nothing was written") from None
    with open(path, "w") as f:
        f.write(text)


def _progress(desc: str):
    """A tqdm bar fed by the samplers' callback (shown only on a terminal, for work longer than a second)."""
    from tqdm import tqdm
    bar = tqdm(desc=desc, unit="step", leave=False, disable=None, mininterval=1.0, delay=1.0)

    def callback(i, n):
        bar.total = n
        bar.n = i
        bar.refresh() if i == n else bar.update(0)
    return bar, callback


def _output_folder(path: str, *inputs: str | None):
    """Before any work: the output's folder exists and the output is not one of the inputs."""
    import os
    folder = Path(path).parent
    if not folder.is_dir():
        raise CliError(f"the output folder {folder} does not exist (nothing was done)")
    for src in inputs:
        if src and os.path.exists(src) and os.path.realpath(src) == os.path.realpath(path):
            raise CliError(f"-o {path} is the input: the result would replace it (give another -o)")


def _json_task(args, task: str, field: str, width: int, done: str):
    """complete and lift: poses from a JSON file through one engine task, hypotheses and seed, JSON out."""
    _output_folder(args.output, args.input)
    data = _read_json(args.input)
    poses = _nested(data, field, args.input, width=width)
    extra = {"known": data.get("known")} if task == "complete" else {}
    eng = _engine(args)
    bar, cb = _progress(task)
    with bar:
        out = getattr(eng, task)(poses, n_hypotheses=args.hypotheses, seed=args.seed, callback=cb, **extra)
    _write_json(args.output, {"joints": out.tolist(), "joint_names": eng.joint_names})
    print(f"{done} {len(poses) if poses.ndim == 3 else 1} pose(s) -> {args.output}")


def _cmd_complete(args):
    """fill in the unknown joints of poses"""
    _json_task(args, "complete", "joints", 3, "completed")


def _cmd_lift(args):
    """2D keypoints to 3D poses"""
    _json_task(args, "lift", "keypoints2d", 2, "lifted")


def _cmd_generate(args):
    _output_folder(args.output, args.around)
    around = None
    if args.around:
        data = _read_json(args.around)
        around = _nested(data, "joints", args.around)
        around = around[0] if around.ndim == 3 else around
    eng = _engine(args)
    bar, cb = _progress("generate")
    with bar:
        out = eng.generate(args.n, seed=args.seed, around=around, pinned=args.pin or None,
                           diversity=args.diversity, callback=cb)
    _write_poses(args.output, out, args.fps, eng)
    print(f"generated {args.n} pose(s) -> {args.output}")


def _cmd_inbetween(args):
    _output_folder(args.output, args.input)
    data = _read_json(args.input)
    take = _nested(data, "take", args.input)
    fps = data.get("fps", 30.0)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise CliError(f"{args.input}: \"fps\" must be a number, got {str(fps)[:40]!r}")
    from gfpose_core.service.limits import file_rate
    file_rate(len(take) if take.ndim else 0, fps, args.input)   # before the engine loads: a slide show is refused
    eng = _engine(args)
    bar, cb = _progress("inbetween")
    with bar:
        out = eng.inbetween(take, known=data.get("known"), fps=fps, seed=args.seed,
                            lock_feet=not args.no_lock_feet, callback=cb)
    _write_poses(args.output, out, fps, eng)
    print(f"filled {len(out)} frame(s) -> {args.output}")


def _write_poses(path: str, poses, fps: float, eng):
    """One pose per frame as a body24 BVH (.bvh, .bvh.gz) or JSON."""
    if path.lower().endswith((".bvh", ".bvh.gz")):
        from gfpose_core.body.skeleton import with_bone_lengths
        from gfpose_core.rigs.body24_bvh import write_body24_bvh
        write_body24_bvh(path, poses, with_bone_lengths(eng.mean_pose, eng.space.reference_bones), fps=fps)
    else:
        _write_json(path, {"joints": poses.tolist(), "joint_names": eng.joint_names})


def _cmd_denoise(args):
    from tqdm import tqdm

    from gfpose_core.formats.bvh import read_bvh, write_bvh
    from gfpose_core.rigs.bvh_skeleton import apply_body24
    from gfpose_core.rigs.rig_map import detect_rig_map, load_rig_map
    from gfpose_core.service import batch, limits

    try:
        files = batch.take_files(args.inputs)
        many = len(files) > 1 or any(Path(p).is_dir() or any(c in p for c in "*?[") for p in args.inputs)
        targets = batch.plan_outputs(files, args.output, args.suffix, many)
    except batch.PlanError as e:
        raise CliError(str(e)) from None
    rig = load_rig_map(args.rig) if args.rig else None   # a bad --rig ends here, before the engine loads
    if many:
        for folder in {t.parent for t in targets}:
            folder.mkdir(parents=True, exist_ok=True)
    eng = _engine(args)
    done, failed = [], []
    for src, target in tqdm(list(zip(files, targets)), desc="denoise", unit="take", disable=None if many else True):
        try:
            clip = read_bvh(src)
            limits.file_rate(len(clip.motion), clip.fps, str(src))
            rig_map = rig or detect_rig_map(clip.skeleton.names, kind="bvh")
            pos, rot = clip.forward_kinematics()
            before = rig_map.body24_positions(clip.skeleton.names, pos, rot)
            after = eng.denoise(before, fps=clip.fps, strength=args.strength,
                                temporal=False if args.per_frame else None)
            cleaned = apply_body24(clip, rig_map, before, after)
            batch.write_replacing(target, lambda tmp: write_bvh(tmp, cleaned))
            done.append((src, target))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # in a batch one bad take is named and skipped; the others are still cleaned
            if not many:
                raise
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            failed.append((src, why if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {why}"))
    for src, target in done:
        print(f"{src} -> {target}")
    if many:
        print(f"denoised {len(done)} of {len(files)} take(s), wrote {len(done)} file(s)"
              + (f"; skipped {len(failed)}:" if failed else ""))
        for src, why in failed:
            print(f"  {src}: {why[:200]}")
    if not done:
        raise CliError("no take could be denoised")


def _token(args) -> str | None:
    """--token-file, GFPOSE_TOKEN or --token (visible to every user in `ps`: the others are better)."""
    import os

    from gfpose_core.service.guard import check_token
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CliError(f"cannot read the token file {args.token_file}: {e}") from None
    token = token or os.environ.get("GFPOSE_TOKEN") or args.token or None
    try:
        return check_token(token)
    except ValueError as e:
        raise CliError(str(e)) from None


def _cmd_serve(args):
    from gfpose_core.service.guard import is_loopback
    from gfpose_core.service.server import serve
    token = _token(args)
    if not is_loopback(args.host) and not token:
        raise CliError(f"refusing to bind {args.host} without a token: anyone who reaches this port could use "
                       "the engine. Give --token-file FILE or set GFPOSE_TOKEN")
    eng = _engine(args)
    print(f"gfpose engine on http://{args.host}:{args.port} ({eng.device}); schema at /docs", flush=True)
    serve(eng, args.host, args.port, token)


def _engine_args(p):
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfpose", description="GFPose engine: a learned 3D human pose prior")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the score model")
    t.add_argument("--data", nargs="*", help="BVH files or folders (default: every shippable set in ../shared/data: CMU and HDM05)")
    t.add_argument("--out", required=True, help="run directory (checkpoints resume from here)")
    t.add_argument("--amc", action="store_true", help="kept for old scripts: the default data has every CMU clip")
    t.add_argument("--no-share-alike", action="store_true",
                   help="leave out HDM05 (CC BY-SA 3.0), so the weights are not share-alike")
    t.add_argument("--motion", action="store_true",
                   help="train the motion model (windows of frames) instead of the per-frame pose model")
    t.add_argument("--posterior-mean", action="store_true",
                   help="train the posterior-mean network (single completions) instead of the score model")
    t.add_argument("--effectors", action="store_true",
                   help="train the network for posing from effectors (live posing: the body between the pelvis, "
                        "hands, feet and head, told the character's bone lengths) instead of the score model")
    t.add_argument("--body-mean", action="store_true",
                   help="train the posterior mean told the body (single completions on characters of other "
                        "proportions: each bone's length where the known joints say it) instead of the score model")
    t.add_argument("--known-noise", type=float, default=0.0,
                   help="--posterior-mean: metres of Gaussian noise on the known joints the network is given")
    t.add_argument("--space-of", metavar="WEIGHTS_DIR",
                   help="--posterior-mean, --body-mean, --effectors: the score model's weights folder whose pose space "
                        "the network is trained in, so that it fits beside it (default: the shipped weights)")
    t.add_argument("--proportions", type=float, default=0.0,
                   help="train on bodies of other proportions too (1: torso +-20%%, arms, legs, shoulders, hips, "
                        "head +-15%%; 0: off)")
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--batch", type=int, help="default: 512 poses, or 64 windows for --motion")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--hidden", type=int, help="default: 768, or 192 for --motion")
    t.add_argument("--embed", type=int, default=256)
    t.add_argument("--blocks", type=int, help="default: 2, or 8 for --motion")
    t.add_argument("--frames", type=int, default=64, help="--motion: window length in frames")
    t.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes (0: no limit)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", help="folder with model.safetensors of the same sizes to start from (fine-tuning)")
    t.add_argument("--fresh-output", action="store_true",
                   help="with --init: zero the output layer (when what the network predicts has changed)")
    t.add_argument("--device", default="auto")
    t.set_defaults(func=_cmd_train)

    for task, fmt, func in (
            ("complete", '{"joints": (N,24,3) with null for unknown, "known": (N,24) optional}', _cmd_complete),
            ("lift", '{"keypoints2d": (N,24,2) image x right, y down; null = unseen}', _cmd_lift)):
        c = sub.add_parser(task, help=f"{func.__doc__ or task} (JSON in, JSON out)")
        c.add_argument("input", help=f"JSON {fmt}")
        c.add_argument("-o", "--output", required=True)
        c.add_argument("-H", "--hypotheses", type=int, default=1)
        _engine_args(c)
        c.set_defaults(func=func)

    g = sub.add_parser("generate", help="plausible poses, free or around a pose (BVH or JSON out)")
    g.add_argument("-n", type=int, default=16)
    g.add_argument("-o", "--output", required=True, help="a .bvh or .json file")
    g.add_argument("--around", help='JSON {"joints": (24,3)} pose to vary')
    g.add_argument("--pin", nargs="*", default=[], help="body24 joint names kept exactly (with --around)")
    g.add_argument("--diversity", type=float, default=0.5)
    g.add_argument("--fps", type=float, default=30.0, help="frame rate of the BVH (one pose per frame)")
    _engine_args(g)
    g.set_defaults(func=_cmd_generate)

    b = sub.add_parser("inbetween", help="fill the frames between keys with the motion model (BVH or JSON out)")
    b.add_argument("input", help='JSON {"take": (T,24,3) with null for every unknown joint, "known": (T,24) '
                                 'optional, "fps": optional (default 30)}')
    b.add_argument("-o", "--output", required=True, help="a .bvh or .json file")
    b.add_argument("--no-lock-feet", action="store_true", help="let planted feet move between keys")
    _engine_args(b)
    b.set_defaults(func=_cmd_inbetween)

    d = sub.add_parser("denoise", help="clean BVH takes (a file, a folder or a glob; same skeleton out)")
    d.add_argument("inputs", nargs="+", help="BVH files (.bvh or .bvh.gz), folders or globs")
    d.add_argument("-o", "--output", help="output file for one take, or a folder (default: beside each take)")
    d.add_argument("--rig", help="rig map name or path (default: detected from the joint names)")
    d.add_argument("--strength", type=float, default=None, help="0..1; default: estimated from the jitter")
    d.add_argument("--suffix", default="_clean", help="added to names written beside their takes")
    d.add_argument("--per-frame", action="store_true",
                   help="use the per-frame prior between low-passes instead of the motion model")
    _engine_args(d)
    d.set_defaults(func=_cmd_denoise)

    s = sub.add_parser("serve", help="the engine over HTTP (loopback by default)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token-file", default=None,
                   help="a file holding the token every request must carry (required for non-loopback hosts)")
    s.add_argument("--token", default=None,
                   help="the token itself (seen by every user in `ps`: prefer --token-file or GFPOSE_TOKEN)")
    _engine_args(s)
    s.set_defaults(func=_cmd_serve)

    from gfpose_core.bench import command as bench
    bench.add_parser(sub)
    return p


def main(argv=None) -> int:
    import warnings
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # numpy's overflow notes on absurd input are noise next to the one line that says what is wrong
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(numpy|gfpose_core)(\..*)?$")
            args.func(args)
    except (CliError, ValueError, FileNotFoundError, OSError) as e:
        print(f"gfpose {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
