package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/policy/dsse"
)

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage ed25519 signing keys"}
	var dir string
	gen := &cobra.Command{
		Use:   "gen NAME",
		Short: "Write NAME.key (mode 0600) and NAME.pub; never overwrites",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keyPath, pubPath, err := dsse.GenerateKeyFiles(dir, args[0])
			if err != nil {
				return err
			}
			pub, err := dsse.LoadPublicKey(pubPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (key id %s)\n", keyPath, pubPath, dsse.KeyID(pub))
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", ".", "directory to write the key pair in")
	cmd.AddCommand(gen)
	return cmd
}
