//go:build race

package main

// raceEnabled says the tests run under -race: the binary they run is built
// with it too.
const raceEnabled = true
