//go:build !race

package nft_test

const raceOn = false
