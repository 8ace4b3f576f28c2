// A Go HTTP server on the runtime's pre-bound listener, via systemd socket activation.
//
// activation.Listeners() checks LISTEN_PID == os.Getpid(), reads LISTEN_FDS and wraps
// fd 3.. as net.Listeners; daemon.SdNotify sends READY=1 to $NOTIFY_SOCKET. SIGTERM
// shuts the server down gracefully (in-flight requests finish) and exits 0.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	listeners, err := activation.Listeners()
	if err != nil {
		log.Fatalf("activation: %v", err)
	}
	if len(listeners) != 1 {
		log.Fatalf("expected 1 inherited listener, got %d", len(listeners))
	}
	body := fmt.Sprintf("%s %d %d go\n", os.Getenv("RUNTIME_INSTANCE"), os.Getpid(), os.Getppid())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()

	daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Printf("serving instance %s", os.Getenv("RUNTIME_INSTANCE"))
	if err := srv.Serve(listeners[0]); err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
	<-done
}
