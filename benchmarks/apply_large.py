"""Applying a 50 MB role of a few thousand files from an offline bundle
(unpack, verify every file, switch; no health wait), against the floor of
`tar -xzf` plus `sha256sum` of every extracted file."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from _common import FLEETCORE, Run, measure, median, spread, table

from fleetcore.testing.gitrepo import FleetRepo

AGENT = """\
device_id = "bench-01"
role = "big"
state_dir = "{state}"
[source]
repo = "{repo}"
[disk]
reserve = "1M"
"""


def make_role(root: Path, files: int, total: int, seed: int = 7) -> int:
    """Files of log-spread sizes, half compressible text, half random bytes."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    scale = total / sum(weights)
    written = 0
    for i, weight in enumerate(weights):
        size = max(1, int(weight * scale))
        path = root / f"roles/big/data/d{i % 40:02}/f{i:05}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i % 2:
            path.write_bytes(rng.randbytes(size))
        else:
            line = f"record {i} value {rng.random()}\n".encode()
            path.write_bytes((line * (size // len(line) + 1))[:size])
        written += size
    (root / "roles/big/activate.sh").write_text("#!/bin/sh\nexit 0\n")
    (root / "roles/big/activate.sh").chmod(0o755)
    (root / "roles/big/role.toml").write_text('[health]\nsettle = "0s"\n')
    return written


def run(rounds: int = 9, files: int = 3000, total: int = 50 * 1024**2) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="fleetcore-bench-apply-"))
    try:
        repo = FleetRepo.create(work / "fleet")
        size = make_role(repo.path, files, total)
        commit = repo.commit(None, "big role")
        bundle = work / "big.bundle"
        measure(
            [
                *FLEETCORE,
                "bundle",
                "create",
                "--repo",
                str(repo.path),
                "--commit",
                commit,
                "--role",
                "big",
                "-o",
                str(bundle),
            ]
        )
        config = work / "agent.toml"
        ours: list[Run] = []
        floor: list[Run] = []
        for _ in range(rounds):
            shutil.rmtree(work / "state", ignore_errors=True)
            config.write_text(AGENT.format(state=work / "state", repo=repo.path))
            ours.append(
                measure(
                    [*FLEETCORE, "agent", "apply", "--bundle", str(bundle), "--config", str(config)]
                )
            )
            out = work / "tar-out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            floor.append(
                measure(
                    [
                        "sh",
                        "-c",
                        f"tar -xzf {bundle} -C {out} && cd {out} && "
                        "find . -type f -print0 | xargs -0 sha256sum >/dev/null",
                    ]
                )
            )
        assert (work / "state/current/data/d01/f00001.bin").exists()
        ratio = median(ours, "wall") / median(floor, "wall")
        print(
            f"\napply a {size / 1024**2:.0f} MiB role of {files} files from a "
            f"{bundle.stat().st_size / 1024**2:.0f} MiB bundle, {rounds} rounds (median, min-max)"
        )
        print(
            table(
                [
                    ["", "wall s", "CPU s", "peak MiB"],
                    [
                        "fleetcore agent apply",
                        spread(ours, "wall"),
                        spread(ours, "cpu"),
                        f"{median(ours, 'max_rss_mib'):.0f}",
                    ],
                    [
                        "tar -xzf + sha256sum",
                        spread(floor, "wall"),
                        spread(floor, "cpu"),
                        f"{median(floor, 'max_rss_mib'):.0f}",
                    ],
                ]
            )
        )
        print(f"fleetcore takes {ratio:.2f}x the floor's wall time (target: at most 1.5x)")
        return {
            "fleetcore_wall": median(ours, "wall"),
            "floor_wall": median(floor, "wall"),
            "fleetcore_cpu": median(ours, "cpu"),
            "floor_cpu": median(floor, "cpu"),
            "ratio": ratio,
            "bytes": size,
            "files": files,
            "fleetcore_rss_mib": median(ours, "max_rss_mib"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
