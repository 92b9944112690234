"""What the emulated aarch64 CPU advertises, read inside the guest (stdlib only).

qemu-user passes the host's x86 /proc/cpuinfo through, on which LiteRT's CPU
detection crashes; rpi.sh mounts the text this prints over the root's
/proc/cpuinfo instead: an arm64 kernel's format, with the emulated core's MIDR
(given) and the features its AT_HWCAP / AT_HWCAP2 really advertise.

    python3 guest_cpuinfo.py --midr 0x410fd083 --cpus 2     # a /proc/cpuinfo text
    python3 guest_cpuinfo.py --features                     # the feature names only
"""

import argparse
import struct

AT_HWCAP, AT_HWCAP2 = 16, 26
# Bit order of the arm64 kernel's HWCAP / HWCAP2 (arch/arm64/include/uapi/asm/hwcap.h).
HWCAP_NAMES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
               "jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat "
               "ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2_NAMES = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm "
                "svef32mm svef64mm svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme "
                "sme_i16i64 sme_f64f64 sme_i8i32 sme_f16f32 sme_b16f32 sme_f32f32 sme_fa64 wfxt "
                "ebf16 sve_ebf16 cssc rprfm sve2p1 sme2 sme2p1 sme_i16i32 sme_bi32i32 sme_b16b16 "
                "sme_f16f16 mops hbc").split()


def auxv(path="/proc/self/auxv"):
  """The process's auxiliary vector as {type: value} (64-bit little-endian pairs)."""
  with open(path, "rb") as handle:
    data = handle.read()
  return dict(struct.iter_unpack("<QQ", data[:len(data) // 16 * 16]))


def features(vector):
  """Feature names set in AT_HWCAP and AT_HWCAP2, in the kernel's order."""
  names = []
  for key, table in ((AT_HWCAP, HWCAP_NAMES), (AT_HWCAP2, HWCAP2_NAMES)):
    value = vector.get(key, 0)
    names += [name for bit, name in enumerate(table) if value >> bit & 1]
  return names


def cpuinfo(midr, cpus, names):
  """/proc/cpuinfo as an arm64 Linux kernel writes it, ``cpus`` identical cores."""
  block = (f"BogoMIPS\t: 108.00\nFeatures\t: {' '.join(names)}\n"
           f"CPU implementer\t: 0x{midr >> 24 & 0xff:02x}\nCPU architecture: 8\n"
           f"CPU variant\t: 0x{midr >> 20 & 0xf:x}\nCPU part\t: 0x{midr >> 4 & 0xfff:03x}\n"
           f"CPU revision\t: {midr & 0xf}\n\n")
  return "".join(f"processor\t: {i}\n{block}" for i in range(cpus))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--midr", type=lambda text: int(text, 0), help="MIDR_EL1, e.g. 0x410fd083")
  parser.add_argument("--cpus", type=int, default=1, help="processors to list")
  parser.add_argument("--features", action="store_true", help="print the feature names only")
  args = parser.parse_args(argv)
  names = features(auxv())
  if args.features:
    print(" ".join(names))
  elif args.midr is None:
    parser.error("give --midr (or --features)")
  else:
    print(cpuinfo(args.midr, args.cpus, names), end="")


if __name__ == "__main__":
  main()
