package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"

	"github.com/minicluster/minicluster/store"
)

// backup copies the running daemon's database into a file, consistent as of one moment
// (minicluster backup FILE).
func (c *client) backup(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: minicluster backup FILE")
	}
	path := args[0]
	resp, err := c.send(http.MethodGet, "/debug/backup", nil, nil, "", "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("backup: %s: %s", resp.Status, data)
	}
	n, err := store.SaveBackup(path, resp.Body)
	if err != nil {
		return fmt.Errorf("backup: the copy received is not whole: %w", err)
	}
	fmt.Fprintf(c.stdout, "backed up %d bytes to %s\n", n, path)
	return nil
}

// restore puts a backup in place of a stopped daemon's database (minicluster restore).
func restore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", DefaultDataDir, "the stopped daemon's data dir")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: minicluster restore [--data-dir DIR] FILE")
	}
	path := filepath.Join(*dataDir, dbFile)
	replaced, err := store.Restore(fs.Arg(0), path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s from %s\n", path, fs.Arg(0))
	if replaced != "" {
		fmt.Fprintf(stdout, "the database it replaced is kept at %s\n", replaced)
	}
	return nil
}
