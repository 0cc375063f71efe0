package elapi_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/herald-router/herald/elapi"
)

func ExampleNewEvent() {
	ev, err := elapi.NewEvent(
		elapi.Message("disk almost full"),
		elapi.String("volume", "/var"),
		elapi.Float("used", 0.93),
		elapi.Map("device", elapi.String("name", "sda"), elapi.Int("size_gb", 512)),
		elapi.Resolve(elapi.ResStamp), // herald writes the event time here
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range ev.Fields() {
		fmt.Println(f.Key, f.Value.Kind())
	}
	_, err = elapi.NewEvent(elapi.String("__volume__", "/var"))
	fmt.Println(err)
	// Output:
	// volume string
	// used float
	// device map
	// R_stamp__ null
	// elapi: key "__volume__": reserved key: "__x__" names are herald's; rename the key
}

func ExampleFromTemplate() {
	web, err := elapi.NewTemplate(elapi.App("shop"), elapi.String("env", "prod"), elapi.String("region", "eu"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ev, err := elapi.FromTemplate(web, elapi.Message("order placed"), elapi.Int("order", 1042), elapi.String("env", "canary"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range ev.Fields() {
		fmt.Printf("%s=%v\n", f.Key, valueText(f.Value))
	}
	// Output:
	// env=canary
	// region=eu
	// order=1042
}

func valueText(v elapi.Value) any {
	switch v.Kind() {
	case elapi.KindInt:
		return v.Int64()
	case elapi.KindString:
		return v.Str()
	}
	return v.Kind()
}

// Log with WaitAllTargets returns when every target wrote the event (here
// herald runs in the example's own process, with two file sinks).
func ExampleDispatcher_Log() {
	dir, _ := os.MkdirTemp("", "elapi-example")
	defer os.RemoveAll(dir)
	h, err := runHerald(dir, fileTargets)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := elapi.Dial(ctx, []string{h.URL}, elapi.WithApplication("billing"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close(ctx)

	ev, _ := elapi.NewEvent(elapi.Message("invoice sent"), elapi.Int("invoice", 7))
	res, err := d.Log(ctx, elapi.MaskAudit|elapi.MaskLog, ev, elapi.WaitAllTargets())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range res.Targets {
		fmt.Println(t)
	}
	fmt.Println("failed:", res.Err())
	// Output:
	// audit: committed by auditfile
	// log: committed by logfile
	// failed: <nil>
}

// LogAsync returns at once; the callback hears when each event is done.
func ExampleDispatcher_LogAsync() {
	dir, _ := os.MkdirTemp("", "elapi-example")
	defer os.RemoveAll(dir)
	h, err := runHerald(dir, fileTargets)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := elapi.Dial(ctx, []string{h.URL}, elapi.WithApplication("shop"))
	if err != nil {
		fmt.Println(err)
		return
	}
	var committed, failed atomic.Int64
	done := func(n elapi.Notice) {
		if n.Err != nil || n.Result.Err() != nil {
			failed.Add(1)
			return
		}
		committed.Add(int64(len(n.Result.Targets)))
	}
	for i := range 1000 {
		ev, _ := elapi.NewEvent(elapi.Message("item viewed"), elapi.Int("item", int64(i)))
		if _, err := d.LogAsync(ev, elapi.MaskLog, done, elapi.OnDone); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := d.Close(ctx); err != nil { // waits for every callback
		fmt.Println(err)
		return
	}
	fmt.Println("copies committed:", committed.Load(), "events failed:", failed.Load())
	// Output:
	// copies committed: 1000 events failed: 0
}
