package roster_test

import (
	"fmt"
	"os"

	"linkguard.dev/linkguard/policy/roster"
)

// Parse reads a roster; a device with a committee floor of 3 in its
// configuration enforces the thresholds below.
func ExampleParse() {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := roster.Parse(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, role := range roster.Roles {
		fmt.Printf("%-10s %d\n", role, len(r.Holders(role)))
	}
	floor := roster.Thresholds{Committee: 3}
	fmt.Printf("%+v\n", r.Thresholds.AtLeast(floor))
	// Output:
	// committee  3
	// grid       2
	// technician 1
	// release    2
	// viewer     1
	// {Committee:3 Grid:1 Protected:2 Technician:1 Release:2}
}
