#!/usr/bin/env python3
"""Builds Herald's Debian package with dpkg-deb from Cargo.toml's [package.metadata.deb].

The same table drives `cargo deb`; this script exists so that CI (and anyone without
cargo-deb) can build the package without compiling cargo-deb first. It understands the
keys that table uses and fails on any other, so the two tools cannot silently disagree.

    packaging/deb/build.py --binary target/release/herald [--out target/debian]

`--binary` is what the assets' `target/release/herald` stands for; it must be statically
linked (the package declares no dependencies). Prints the path of the .deb it wrote.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KNOWN_KEYS = {
    "maintainer",
    "section",
    "priority",
    "depends",
    "extended-description",
    "maintainer-scripts",
    "assets",
}
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")


def fail(message: str) -> None:
    sys.exit(f"packaging/deb/build.py: {message}")


def is_static(binary: Path) -> bool:
    # `file` says "statically linked" or "static-pie linked"; a dynamic binary has an
    # interpreter (the dynamic loader).
    out = subprocess.run(["file", "-L", str(binary)], capture_output=True, text=True, check=True).stdout
    return "static" in out and "interpreter" not in out


def depends(value: str, binary: Path) -> str:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if "$auto" in parts:
        # cargo-deb asks dpkg-shlibdeps; a static binary has no shared libraries to name.
        if not is_static(binary):
            fail(f"{binary} is dynamically linked; build it with "
                 "RUSTFLAGS='-C target-feature=+crt-static' (or use cargo deb, which asks dpkg-shlibdeps)")
        parts.remove("$auto")
    return ", ".join(parts)


def description(summary: str, extended: str) -> str:
    lines = [summary]
    words, line = extended.split(), ""
    for word in words:  # wrap at 79 columns, each continuation line indented by one space
        if line and len(line) + 1 + len(word) > 78:
            lines.append(" " + line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(" " + line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, type=Path, help="the herald binary to package")
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "debian")
    args = parser.parse_args()

    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    package = manifest["package"]
    meta = package["metadata"]["deb"]
    unknown = set(meta) - KNOWN_KEYS
    if unknown:
        fail(f"[package.metadata.deb] has keys this script does not know: {sorted(unknown)}")
    binary = args.binary.resolve()
    if not binary.is_file():
        fail(f"no binary at {binary}")

    os.umask(0o022)  # directories 0755, as dpkg-deb requires for DEBIAN/
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    version = f"{package['version']}-1"  # cargo-deb's default revision
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "pkg"
        conffiles = []
        installed = 0
        md5sums = []
        for source, dest, mode in meta["assets"]:
            src = binary if source.startswith("target/release/") else ROOT / source
            target = dest + Path(source).name if dest.endswith("/") else dest
            path = stage / target
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, path)
            path.chmod(int(mode, 8))
            data = path.read_bytes()
            installed += (len(data) + 1023) // 1024
            md5sums.append(f"{hashlib.md5(data).hexdigest()}  {target}")
            if target.startswith("etc/"):  # cargo-deb's rule: everything in /etc is a conffile
                conffiles.append("/" + target)

        control_dir = stage / "DEBIAN"
        control_dir.mkdir()
        fields = {
            "Package": package["name"],
            "Version": version,
            "Architecture": arch,
            "Maintainer": meta["maintainer"],
            "Installed-Size": str(installed),
            "Depends": depends(meta.get("depends", ""), binary),
            "Section": meta["section"],
            "Priority": meta["priority"],
            "Description": description(package["description"], meta["extended-description"]),
        }
        control = "".join(f"{k}: {v}\n" for k, v in fields.items() if v)
        (control_dir / "control").write_text(control)
        (control_dir / "md5sums").write_text("\n".join(md5sums) + "\n")
        if conffiles:
            (control_dir / "conffiles").write_text("\n".join(conffiles) + "\n")
        scripts = ROOT / meta["maintainer-scripts"]
        for name in SCRIPTS:
            if (scripts / name).is_file():
                shutil.copyfile(scripts / name, control_dir / name)
                (control_dir / name).chmod(0o755)

        args.out.mkdir(parents=True, exist_ok=True)
        deb = args.out.resolve() / f"{package['name']}_{version}_{arch}.deb"
        # --root-owner-group: every file root:root whoever builds; the maintainer scripts
        # create the herald user and hand it /var/lib/herald.
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", str(stage), str(deb)],
                       check=True, stdout=subprocess.DEVNULL)
    print(deb)


if __name__ == "__main__":
    main()
