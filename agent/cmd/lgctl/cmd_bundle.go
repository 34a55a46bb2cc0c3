package main

import (
	"bytes"
	"crypto/ed25519"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy/dsse"
)

func newBundleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Build, co-sign and verify signed firmware bundles (.lgb) and downgrade tickets"}
	cmd.AddCommand(newBundleBuildCmd(), newBundleCosignCmd(), newBundleTicketCmd(), newBundleVerifyCmd())
	return cmd
}

func newBundleBuildCmd() *cobra.Command {
	var (
		arch, version, binary, defConfig, out, compatFrom, downgrade, compression string
		keys, inits                                                               []string
		minHW                                                                     int
	)
	cmd := &cobra.Command{
		Use:   "build --arch ARCH --version V --binary FILE --key release.key -o FILE",
		Short: "Sign a manifest of the binary, default config and init scripts with release keys and write one bundle file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkELF(binary, arch); err != nil {
				return err
			}
			comp, err := bundle.ParseCompression(compression)
			if err != nil {
				return err
			}
			privs, err := loadPrivateKeys(keys)
			if err != nil {
				return err
			}
			// Only the binary is worth compressing; config and init scripts
			// are a few KiB.
			files := []bundle.File{{Name: bundle.BinaryName, Path: binary, Mode: 0o755, Compression: comp}}
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
			fmt.Fprintf(w, "%s: linkguard %s for %s, %d bytes (%s), signed by %d key(s)\n", out, m.Version, m.Arch, buf.Len(), transferText(m, buf.Len()), len(privs))
			printPayloads(w, m)
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
	f.StringVar(&compression, "compression", "zstd", "how the binary is stored in the bundle: zstd, or none for devices older than bundle format 2 (slots always hold it decompressed)")
	f.StringVar(&downgrade, "downgrade-reason", "", "note on why one would go back to this release; it permits nothing (a downgrade takes a ticket: lgctl bundle ticket)")
	for _, r := range []string{"arch", "version", "binary", "key"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}

func printPayloads(w io.Writer, m bundle.Manifest) {
	for _, p := range m.Payloads {
		fmt.Fprintf(w, "  %-24s %04o %9d  sha256:%s\n", p.Name, p.Mode, p.Size, p.SHA256)
		if p.Compression != bundle.None {
			fmt.Fprintf(w, "  %-24s      %9d  stored %s, %.1f%% of its size\n", "", p.StoredSize, p.Compression, 100*float64(p.StoredSize)/float64(max(p.Size, 1)))
		}
	}
}

// serialBaud is the console line lgctl flash --port usually drives.
const serialBaud = 115200

// serialTime is the least time n bundle bytes take over the serial
// console: base64 (4 characters per 3 bytes) at 10 bits a character (8N1),
// before the protocol's per-chunk answers.
func serialTime(n int64) time.Duration {
	return (time.Duration(n*4/3*10) * time.Second / serialBaud).Round(time.Second)
}

// transferText is how long the bundle takes over the serial console and,
// when it is compressed, what the same bundle uncompressed would take.
func transferText(m bundle.Manifest, size int) string {
	s := fmt.Sprintf("at least %v at %d baud", serialTime(int64(size)), serialBaud)
	plain := int64(size)
	for _, p := range m.Payloads {
		if p.Compression != bundle.None {
			table := (p.StoredSize + bundle.ChunkSize - 1) / bundle.ChunkSize * 32
			plain += p.Size - p.StoredSize - table
		}
	}
	if plain != int64(size) {
		s += fmt.Sprintf(", %v uncompressed", serialTime(plain))
	}
	return s
}

func newBundleCosignCmd() *cobra.Command {
	var keyPath, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "cosign --key B.key FILE.lgb|TICKET.json [-o OUT]",
		Short: "Add your release signature to a bundle or a downgrade ticket, over its exact signed bytes (in place unless -o)",
		Long: `Add your release signature to a bundle, after checking it is well formed
(its manifest valid, every payload matching its sha256) and that you have
not signed it, or to a downgrade ticket, after checking it is well formed and
unexpired. Devices require update threshold release signatures and refuse a
bundle signed by a key they do not trust: devices must trust your key before
you sign what they install.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if out == "" {
				out = path
			}
			key, err := dsse.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			id := shortID(dsse.KeyID(key.Public().(ed25519.PublicKey)))
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			if !bytes.HasPrefix(data, []byte(bundle.Magic)) {
				t, signed, err := bundle.CosignTicket(data, key, time.Now())
				if errors.Is(err, dsse.ErrAlreadySigned) {
					return fmt.Errorf("%s is already signed by %s (key id %s); nothing to add", path, keyPath, id)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				if err := writeCosigned(cmd.OutOrStdout(), out, path, signed, force); err != nil || out == "-" {
					return err
				}
				fmt.Fprintf(stderr, "added the signature of %s (key id %s) to the downgrade ticket for %s on %s (%s), expires %s: %s\n",
					filepath.Base(keyPath), id, t.Version, ticketDevices(t), t.Reason, t.Expires.UTC().Format(time.RFC3339), out)
				return nil
			}
			var buf bytes.Buffer
			m, ids, err := bundle.Cosign(&buf, bytes.NewReader(data), key)
			if errors.Is(err, bundle.ErrAlreadySigned) {
				return fmt.Errorf("%s is already signed by %s (key id %s); nothing to add", path, keyPath, id)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, path, buf.Bytes(), force); err != nil || out == "-" {
				return err
			}
			fmt.Fprintf(stderr, "added the signature of %s (key id %s) to linkguard %s for %s: %d signature(s) in %s\n",
				filepath.Base(keyPath), id, m.Version, m.Arch, len(ids), out)
			printPayloads(stderr, m)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "your release private key")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default: FILE, in place), - for stdout")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing output file other than FILE")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func ticketDevices(t bundle.Ticket) string {
	if t.Site != "" {
		return "site " + t.Site
	}
	return "devices " + strings.Join(t.Devices, ", ")
}

func newBundleTicketCmd() *cobra.Command {
	var (
		keys, devices              []string
		version, site, reason, out string
		valid                      time.Duration
		force                      bool
	)
	cmd := &cobra.Command{
		Use:   "ticket --key A.key --version V (--device ID ... | --site SITE) --reason TEXT [--valid 72h] -o TICKET.json",
		Short: "Sign a downgrade ticket: lets the named devices install one exact older version until it expires (others add theirs with bundle cosign)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			privs, err := loadPrivateKeys(keys)
			if err != nil {
				return err
			}
			now := time.Now().UTC().Truncate(time.Second)
			t := bundle.Ticket{Version: version, Devices: devices, Site: site, Reason: reason, Issued: now, Expires: now.Add(valid)}
			env, err := bundle.SignTicket(t, privs...)
			if err != nil {
				return err
			}
			if out == "" {
				out = "downgrade-" + version + ".ticket.json"
			}
			if err := writeCosigned(cmd.OutOrStdout(), out, "", env, force); err != nil || out == "-" {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signed a downgrade ticket for %s on %s, expires %s (%s), with %d key(s) into %s\n",
				version, ticketDevices(t), t.Expires.Format(time.RFC3339), untilText(t.Expires, now), len(privs), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&keys, "key", nil, "release private key (repeatable)")
	f.StringVar(&version, "version", "", "the exact version the ticket lets in")
	f.StringSliceVar(&devices, "device", nil, "device id it is for (repeatable)")
	f.StringVar(&site, "site", "", "or: every device of this site")
	f.StringVar(&reason, "reason", "", "why (recorded on the device)")
	f.DurationVar(&valid, "valid", 72*time.Hour, fmt.Sprintf("how long it is valid (at most %v)", bundle.MaxTicketValidity))
	f.StringVarP(&out, "output", "o", "", "ticket file (default downgrade-VERSION.ticket.json), - for stdout")
	f.BoolVar(&force, "force", false, "replace an existing output file")
	for _, r := range []string{"key", "version", "reason"} {
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
		trust                                 []string
		arch, installed, ticket, device, site string
		hw, threshold                         int
	)
	cmd := &cobra.Command{
		Use:   "verify FILE --trust release.pub --arch ARCH [--threshold K] [--installed V [--ticket T --device ID --site S]]",
		Short: "Check a bundle as a device would, without installing it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, err := dsse.LoadKeyring(trust...)
			if err != nil {
				return err
			}
			p := bundle.Policy{Keys: ring, Threshold: threshold, Arch: arch, Hardware: hw, Installed: installed, Device: device, Site: site}
			if ticket != "" {
				if p.Ticket, err = os.ReadFile(ticket); err != nil {
					return err
				}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			m, err := bundle.Verify(f, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: linkguard %s for %s (min hardware %d), %d payloads, signed by %d or more trusted release key(s)\n",
				args[0], m.Version, m.Arch, m.MinHardware, len(m.Payloads), max(threshold, 1))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&trust, "trust", nil, "release public key (repeatable)")
	cmd.Flags().IntVar(&threshold, "threshold", 1, "release signatures required (the devices' update threshold)")
	cmd.Flags().StringVar(&arch, "arch", "", "device architecture")
	cmd.Flags().IntVar(&hw, "hardware", 1<<30, "device hardware revision (default: any)")
	cmd.Flags().StringVar(&installed, "installed", "", "version installed on the device, to check compatible-from and downgrades")
	cmd.Flags().StringVar(&ticket, "ticket", "", "downgrade ticket, for a version older than --installed")
	cmd.Flags().StringVar(&device, "device", "", "device id the ticket must name")
	cmd.Flags().StringVar(&site, "site", "", "site of the device")
	_ = cmd.MarkFlagRequired("trust")
	_ = cmd.MarkFlagRequired("arch")
	return cmd
}
