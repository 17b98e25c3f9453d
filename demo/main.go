package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	// SIGINT and SIGTERM end the demo: it stops the agents and cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv, executable: exe})
	stop()
	os.Exit(code)
}
