import { describe, expect, it } from "vitest";
import { TOOLS } from "./metadata.js";

// Captured from the tools on Debian 12 (the development machine and the VM tier's guest).
describe("version parsers", () => {
  it.each([
    [TOOLS.cryptsetup.name, TOOLS.cryptsetup, "cryptsetup 2.6.1 flags: UDEV BLKID KEYRING KERNEL_CAPI \n", "2.6.1"],
    [TOOLS.fio.name, TOOLS.fio, "fio-3.33\n", "3.33"],
    [
      TOOLS.qemu.name,
      TOOLS.qemu,
      "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n",
      "7.2.22",
    ],
    [TOOLS.mke2fs.name, TOOLS.mke2fs, "\nmke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n", "1.47.0"],
    [TOOLS.utilLinux.name, TOOLS.utilLinux, "losetup from util-linux 2.38.1\n", "2.38.1"],
    [TOOLS.wg.name, TOOLS.wg, "wireguard-tools v1.0.20210914 - https://git.zx2c4.com/wireguard-tools/\n", "1.0.20210914"],
    [TOOLS.iperf3.name, TOOLS.iperf3, "iperf 3.12 (cJSON 1.7.15)\nLinux host 6.1.0 #1 SMP x86_64\n", "3.12"],
  ])("%s", (_name, probe, output, version) => {
    expect(probe.parse(output)).toBe(version);
  });

  it("does not invent a version from unrelated output", () => {
    expect(TOOLS.fio.parse("command not found")).toBeUndefined();
  });
});
