// Command echo is the tests' workload: with -listen it answers every HTTP
// request with the pod's name and the caller's address; with -get it
// fetches a URL, retrying for up to -for, prints the body and exits 0 on
// success.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "", "address to serve on")
	get := flag.String("get", "", "URL to fetch")
	wait := flag.Duration("for", 30*time.Second, "how long -get retries")
	flag.Parse()
	switch {
	case *listen != "":
		host, _ := os.Hostname()
		srv := &http.Server{Addr: *listen, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "echo from %s to %s\n", host, r.RemoteAddr)
		})}
		go func() {
			c := make(chan os.Signal, 1)
			signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
			<-c
			srv.Shutdown(context.Background())
		}()
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case *get != "":
		c := &http.Client{Timeout: 2 * time.Second}
		deadline := time.Now().Add(*wait)
		for {
			resp, err := c.Get(*get)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					fmt.Print(string(body))
					return
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "get:", err)
				os.Exit(1)
			}
			time.Sleep(200 * time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: echo -listen ADDR | -get URL")
		os.Exit(2)
	}
}
