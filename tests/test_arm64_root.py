"""The emulated arm64 root's build script: its refusals, checked before any side effect."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATED = os.path.join(ROOT, "benchmarks", "on_device", "emulated")
BUILD = os.path.join(EMULATED, "build_root.sh")


def _stub(directory, name, body):
  path = directory / name
  path.write_text(f"#!/bin/sh\n{body}\n")
  path.chmod(0o755)


@pytest.fixture(name="fake_bin")
def fixture_fake_bin(tmp_path):
  """A PATH where `id -u` says 0 and every root tool fails loudly if it is ever called."""
  directory = tmp_path / "bin"
  directory.mkdir()
  _stub(directory, "id", 'echo 0')
  for tool in ("debootstrap", "update-binfmts", "chroot", "mountpoint", "mount", "umount"):
    _stub(directory, tool, f'echo "{tool} was called" >&2; exit 99')
  return directory


def _build(*args, path=None):
  env = dict(os.environ)
  env.pop("DKP_ARM64_ROOT", None)
  if path is not None:
    env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
  return subprocess.run(["bash", BUILD, *map(str, args)], capture_output=True, text=True,
                        timeout=60, check=False, env=env)


def test_help():
  result = _build("-h")
  assert result.returncode == 0
  assert "Usage:" in result.stdout and "arm64-root" in result.stdout


def test_refuses_root_inside_repository():
  result = _build(os.path.join(ROOT, "arm64-root"))
  assert result.returncode == 2 and "inside the repository" in result.stderr
  assert not os.path.exists(os.path.join(ROOT, "arm64-root"))


def test_refuses_non_root(tmp_path):
  fake = tmp_path / "bin"
  fake.mkdir()
  _stub(fake, "id", "echo 1000")
  result = _build(tmp_path / "root", path=fake)
  assert result.returncode == 2 and "must run as root" in result.stderr
  assert not (tmp_path / "root").exists()


def test_refuses_missing_tools(tmp_path):
  fake = tmp_path / "bin"  # only what the script needs before its checks, no root tools
  fake.mkdir()
  _stub(fake, "id", "echo 0")
  for tool in ("realpath", "dirname"):
    os.symlink(subprocess.check_output(["bash", "-c", f"command -v {tool}"], text=True).strip(),
               fake / tool)
  env = {"PATH": str(fake), "HOME": str(tmp_path)}
  result = subprocess.run(["/bin/bash", BUILD, str(tmp_path / "root")], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
  assert result.returncode == 2, result.stderr
  assert "missing: debootstrap update-binfmts chroot mountpoint" in result.stderr
  assert "apt-get install -y qemu-user-static binfmt-support debootstrap" in result.stderr


def test_refuses_foreign_directories(tmp_path, fake_bin):
  if not os.path.exists("/usr/share/binfmts/qemu-aarch64"):
    pytest.skip("qemu-user-static is not installed: the script stops at that check first")
  mine = tmp_path / "root"
  mine.mkdir()
  (mine / "notes.txt").write_text("user data")
  result = _build(mine, path=fake_bin)
  assert result.returncode == 2 and "is not a root this script finished" in result.stderr
  assert (mine / "notes.txt").read_text() == "user data"
  partial = tmp_path / "other.partial"
  partial.mkdir()
  (partial / "notes.txt").write_text("user data")
  result = _build(tmp_path / "other", path=fake_bin)
  assert result.returncode == 2 and "is not a build of this script" in result.stderr
  assert (partial / "notes.txt").exists()
  assert "was called" not in result.stderr


def test_fetch_qemu_refuses_foreign_directory(tmp_path):
  mine = tmp_path / "qemu"
  mine.mkdir()
  (mine / "notes.txt").write_text("user data")
  result = subprocess.run(["bash", os.path.join(EMULATED, "fetch_qemu.sh"), str(mine)],
                          capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 2 and "holds no qemu-aarch64 of this script" in result.stderr
  assert (mine / "notes.txt").read_text() == "user data"
  assert not list(tmp_path.glob("qemu.apt.*"))


def test_fetch_qemu_help_names_the_default_destination(tmp_path):
  result = subprocess.run(["bash", os.path.join(EMULATED, "fetch_qemu.sh"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
  assert result.returncode == 0
  assert f"default {tmp_path}/dkp-keras/qemu-trixie;" in result.stdout


@pytest.mark.parametrize("cpu,version,warns", [
    ("max", "7.2.22", True), ("max,sve-default-vector-length=16", "9.2.0", True),
    ("max,sme=off", "7.2.22", False), ("max,sve=off", "7.2.22", False),
    ("max", "10.0.13", False), ("cortex-a76", "7.2.22", False), ("max", "", False)])
def test_old_qemu_sme_warning(cpu, version, warns):
  script = (f'die() {{ exit 9; }}; source {os.path.join(EMULATED, "root.sh")}; '
            f'warn_old_sme "{cpu}" "{version}"')
  result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
  assert result.returncode == 0
  assert ("emulates SME wrongly" in result.stderr) == warns


def test_build_plugins_help_and_missing_tools(tmp_path):
  script = os.path.join(EMULATED, "build_plugins.sh")
  usage = subprocess.run(["bash", script, "-h"], capture_output=True, text=True, timeout=60,
                         check=False)
  assert usage.returncode == 0 and "libinsn.so" in usage.stdout and "-plugin" in usage.stdout
  bad = subprocess.run(["bash", script, "--nope"], capture_output=True, text=True, timeout=60,
                       check=False)
  assert bad.returncode == 2 and "unknown option: --nope" in bad.stderr
  fake = tmp_path / "bin"  # no apt-get, gcc, qemu-aarch64 ...
  fake.mkdir()
  result = subprocess.run(["/bin/bash", script, str(tmp_path / "plugins")], capture_output=True,
                          text=True, timeout=60, check=False, env={"PATH": str(fake)})
  assert result.returncode == 2
  assert "missing: apt-get dpkg-query gcc pkg-config tar qemu-aarch64" in result.stderr
  assert "apt-get install -y qemu-user gcc pkg-config libglib2.0-dev" in result.stderr
  assert not (tmp_path / "plugins").exists()


def test_build_plugins_refuses_foreign_directory(tmp_path):
  needed = ("apt-get", "dpkg-query", "gcc", "pkg-config", "qemu-aarch64")
  if any(subprocess.run(["bash", "-c", f"command -v {t}"], capture_output=True,
                        check=False).returncode for t in needed):
    pytest.skip("the build tools are not installed: the script stops at that check first")
  mine = tmp_path / "plugins"
  mine.mkdir()
  (mine / "notes.txt").write_text("user data")
  result = subprocess.run(["bash", os.path.join(EMULATED, "build_plugins.sh"), str(mine)],
                          capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 2 and "holds no plugins of this script" in result.stderr
  assert (mine / "notes.txt").read_text() == "user data"
