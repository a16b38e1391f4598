package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/minicluster/minicluster/node/images"
	"github.com/minicluster/minicluster/node/runtime"
)

const imagesUsage = `Usage:
  minicluster images [--data-dir DIR] [list]            the node's images
  minicluster images [--data-dir DIR] pull [--insecure] REF   pull an image into the store
  minicluster images [--data-dir DIR] import FILE       import a docker save tarball
  minicluster images [--data-dir DIR] rm REF...         remove images
`

// imagesCommand manages the node's image store directly (root, beside the daemon or
// without it), as crictl does the kubelet's runtime's.
func imagesCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, imagesUsage) }
	dataDir := fs.String("data-dir", DefaultDataDir, "the daemon's data dir (its images/ holds the store)")
	insecure := fs.Bool("insecure", false, "pull over plain HTTP (a local registry)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	verb, rest := "list", fs.Args()
	if len(rest) > 0 {
		verb, rest = rest[0], rest[1:]
	}
	// Flags may follow the verb too.
	if err := fs.Parse(rest); err != nil {
		return err
	}
	rest = fs.Args()
	cfg := images.Config{Dir: filepath.Join(*dataDir, "images")}
	if *insecure && len(rest) == 1 {
		host, _, _ := strings.Cut(rest[0], "/")
		cfg.Insecure = []string{host}
	}
	store, err := images.New(cfg)
	if err != nil {
		return err
	}
	switch {
	case verb == "list" && len(rest) == 0:
		w := tabwriter.NewWriter(stdout, 0, 8, 3, ' ', 0)
		fmt.Fprintln(w, "IMAGE\tTAG\tIMAGE ID\tSIZE")
		for _, img := range store.List() {
			id := strings.TrimPrefix(img.ID, "sha256:")[:13]
			size := resource.NewQuantity(img.Size, resource.BinarySI)
			refs := img.Refs
			if len(refs) == 0 {
				refs = []string{"<none>"}
			}
			for _, ref := range refs {
				repo, tag := ref, "<none>"
				if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
					repo, tag = ref[:i], ref[i+1:]
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", repo, tag, id, size)
			}
		}
		return w.Flush()
	case verb == "pull" && len(rest) == 1:
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		img, err := store.Pull(ctx, rest[0], nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Image is up to date for %s\n", img.ID)
		return nil
	case verb == "import" && len(rest) == 1:
		imported, err := store.Import(rest[0])
		if err != nil {
			return err
		}
		for _, img := range imported {
			fmt.Fprintf(stdout, "imported %s (%s)\n", strings.Join(img.Refs, ", "), img.ID)
		}
		return nil
	case verb == "rm" && len(rest) > 0:
		inUse := func(img *images.Image) bool { return runtime.ImageInUse(*dataDir, store.RootFS(img)) }
		var errs []error
		for _, ref := range rest {
			if err := store.Remove(ref, inUse); err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(stdout, "Deleted: %s\n", ref)
		}
		return errors.Join(errs...)
	}
	fmt.Fprint(stderr, imagesUsage)
	return errReported
}
