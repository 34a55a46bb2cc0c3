package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.bug.st/serial/enumerator"
)

func newPortsCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ports",
		Short: "List USB-serial adapters (port, VID:PID, serial number) to pick the right cable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ports, err := enumerator.GetDetailedPortsList()
			if err != nil {
				return fmt.Errorf("list serial ports: %w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PORT\tVID:PID\tSERIAL\tPRODUCT")
			n := 0
			for _, p := range ports {
				if !p.IsUSB && !all {
					continue
				}
				id, sn, prod := "-", "-", "-"
				if p.IsUSB {
					id = p.VID + ":" + p.PID
				}
				if p.SerialNumber != "" {
					sn = p.SerialNumber
				}
				if p.Product != "" {
					prod = p.Product
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, id, sn, prod)
				n++
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no USB-serial adapters found (plug the cable in; --all lists every serial port)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list non-USB serial ports too")
	return cmd
}
