import { describe, expect, it } from "vitest";
import * as cryptsetup from "../../csi/luks/cryptsetup.js";
import { withArgon2idDefaults } from "./kdf.js";

describe("withArgon2idDefaults", () => {
  it("swaps cloak's pbkdf2 flags for argon2id at cryptsetup's defaults and keeps everything else", () => {
    const cloak = cryptsetup.luksFormat({ device: "/dev/loop0", uuid: "u", passphrase: Buffer.from("k"), integrity: false });
    const argon = withArgon2idDefaults(cloak);
    expect(cloak.args).toEqual(expect.arrayContaining(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations"]));
    expect(argon.args).toEqual(cloak.args.filter((_, i, all) => !["--pbkdf-force-iterations"].includes(all[i] ?? "") && !["--pbkdf-force-iterations"].includes(all[i - 1] ?? "")).map((a) => (a === "pbkdf2" ? "argon2id" : a)));
    expect(argon.args).not.toContain("--pbkdf-force-iterations");
    expect(argon.args).toContain("--cipher");
    expect(argon.args.at(-1)).toBe("/dev/loop0");
    expect(argon.input).toBe(cloak.input);
  });

  it("refuses a command without a KDF to replace", () => {
    expect(() => withArgon2idDefaults({ file: "cryptsetup", args: ["luksFormat", "/dev/loop0"] })).toThrow();
  });
});
