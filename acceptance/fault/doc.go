// Package faultsuite is an independent fault and bad-input acceptance suite
// for github.com/zmqkit/zmqkit. Everything is in the _test.go files.
package faultsuite
