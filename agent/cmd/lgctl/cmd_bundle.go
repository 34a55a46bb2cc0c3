package main

import (
	"bytes"
	"crypto/ed25519"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy/dsse"
)

func newBundleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Build and verify signed firmware bundles (.lgb)"}
	cmd.AddCommand(newBundleBuildCmd(), newBundleVerifyCmd())
	return cmd
}

func newBundleBuildCmd() *cobra.Command {
	var (
		arch, version, binary, defConfig, out, compatFrom, downgrade string
		keys, inits                                                  []string
		minHW                                                        int
	)
	cmd := &cobra.Command{
		Use:   "build --arch ARCH --version V --binary FILE --key release.key -o FILE",
		Short: "Sign a manifest of the binary, default config and init scripts with release keys and write one bundle file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkELF(binary, arch); err != nil {
				return err
			}
			var privs []ed25519.PrivateKey
			for _, k := range keys {
				p, err := dsse.LoadPrivateKey(k)
				if err != nil {
					return err
				}
				privs = append(privs, p)
			}
			files := []bundle.File{{Name: bundle.BinaryName, Path: binary, Mode: 0o755}}
			if defConfig != "" {
				files = append(files, bundle.File{Name: "config/default.yaml", Path: defConfig, Mode: 0o644})
			}
			for _, p := range inits {
				files = append(files, bundle.File{Name: "init/" + filepath.Base(p), Path: p, Mode: 0o755})
			}
			if out == "" {
				out = fmt.Sprintf("linkguard-%s-%s.lgb", version, arch)
			}
			var buf bytes.Buffer
			m, err := bundle.Build(&buf, bundle.Manifest{
				Version: version, Arch: arch, MinHardware: minHW, Created: time.Now().UTC().Truncate(time.Second),
				CompatibleFrom: compatFrom, DowngradeReason: downgrade,
			}, files, privs...)
			if err != nil {
				return err
			}
			if err := atomicfile.Write(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s: linkguard %s for %s, %d bytes, signed by %d key(s)\n", out, m.Version, m.Arch, buf.Len(), len(privs))
			for _, p := range m.Payloads {
				fmt.Fprintf(w, "  %-24s %04o %9d  sha256:%s\n", p.Name, p.Mode, p.Size, p.SHA256)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&arch, "arch", "", "target architecture: arm (GOARM=7), arm64, mipsle, mips (softfloat), amd64")
	f.StringVar(&version, "version", "", "release version MAJOR.MINOR.PATCH[-pre]")
	f.StringVar(&binary, "binary", "", "the linkguard binary built for --arch")
	f.StringVar(&defConfig, "default-config", "", "default configuration shipped in the slot")
	f.StringSliceVar(&inits, "init", nil, "init script or unit to ship (repeatable): scripts/linkguard.procd, scripts/linkguard.service")
	f.StringSliceVar(&keys, "key", nil, "release private key (repeatable for a threshold)")
	f.StringVarP(&out, "output", "o", "", "bundle file (default linkguard-VERSION-ARCH.lgb)")
	f.IntVar(&minHW, "min-hardware", 0, "lowest hardware revision the release runs on")
	f.StringVar(&compatFrom, "compatible-from", "", "lowest installed version that may update to this one directly")
	f.StringVar(&downgrade, "downgrade-reason", "", "signed reason that lets devices install this over a newer version (with --allow-downgrade)")
	for _, r := range []string{"arch", "version", "binary", "key"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}

// checkELF refuses a binary built for another architecture than --arch: a
// bundle every device would accept and then fail to run is the worst kind.
func checkELF(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	var got string
	switch f.Machine {
	case elf.EM_ARM:
		got = "arm"
	case elf.EM_AARCH64:
		got = "arm64"
	case elf.EM_X86_64:
		got = "amd64"
	case elf.EM_386:
		got = "386"
	case elf.EM_MIPS:
		got = "mips"
		if f.ByteOrder.String() == "LittleEndian" {
			got = "mipsle"
		}
	default:
		got = f.Machine.String()
	}
	if got != arch {
		return fmt.Errorf("%s is built for %s, not --arch %s", path, got, arch)
	}
	return nil
}

func newBundleVerifyCmd() *cobra.Command {
	var (
		trust           []string
		arch, installed string
		hw              int
	)
	cmd := &cobra.Command{
		Use:   "verify FILE --trust release.pub --arch ARCH",
		Short: "Check a bundle as a device would, without installing it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, err := dsse.LoadKeyring(trust...)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			m, err := bundle.Verify(f, bundle.Policy{Keys: ring, Arch: arch, Hardware: hw, Installed: installed, AllowDowngrade: true})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: linkguard %s for %s (min hardware %d), %d payloads\n", args[0], m.Version, m.Arch, m.MinHardware, len(m.Payloads))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&trust, "trust", nil, "release public key (repeatable)")
	cmd.Flags().StringVar(&arch, "arch", "", "device architecture")
	cmd.Flags().IntVar(&hw, "hardware", 1<<30, "device hardware revision (default: any)")
	cmd.Flags().StringVar(&installed, "installed", "", "version installed on the device, to check compatible-from")
	_ = cmd.MarkFlagRequired("trust")
	_ = cmd.MarkFlagRequired("arch")
	return cmd
}
