// Package k6 holds the k6 load-test scenarios of flashgate (*.js, run with
// `make loadtest`). It has no Go code; its test checks that the scripts parse
// and that they and loadtest/README.md name the same metrics and settings.
package k6
