package sim

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	simSteps = flag.Int("sim.steps", 1_000_000, "simulation steps in all (spread over seeds of sim.per steps)")
	simPer   = flag.Int("sim.per", 20_000, "steps of one seed's run")
	simSeed  = flag.Uint64("sim.seed", 0, "run this seed alone and print its whole trace")
	simFirst = flag.Uint64("sim.first", 1, "the first seed of the run")
	simFile  = flag.String("sim.file", "", "run this scenario file alone and print its whole trace")
)

// TestScenarioFiles runs the scenario files under testdata: schedules that
// once broke an invariant, shrunk, kept so that they never do again.
func TestScenarioFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if *simFile != "" {
		files = []string{*simFile}
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			o, err := ParseScenario(string(text))
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if *simFile != "" {
				o.Trace = os.Stdout
			}
			w := Replay(o, o.Schedule)
			if err := w.Err(); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			t.Logf("%s: %d steps, converged after %v", file, w.Steps(), w.convergence)
		})
	}
}

// TestSimulation runs seeded simulations of whole clusters under faults
// (see the package comment) and fails with the seed and trace of the first
// broken invariant. -sim.steps makes the run longer; -sim.seed replays one.
func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		o := RandomOptions(*simSeed, *simPer)
		o.Trace = os.Stdout
		w := New(o)
		if err := w.Run(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d steps, %d decisions", o, w.Steps(), w.Decisions())
		return
	}
	seeds := max(1, *simSteps / *simPer)
	start := time.Now()
	var (
		steps, decisions, limits atomic.Int64
		next                     atomic.Uint64
		wg                       sync.WaitGroup
		mu                       sync.Mutex
		failed                   []string
	)
	next.Store(*simFirst)
	last := *simFirst + uint64(seeds)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				o := RandomOptions(seed, *simPer)
				w := New(o)
				err := w.Run()
				steps.Add(int64(w.Steps()))
				decisions.Add(int64(w.Decisions()))
				limits.Add(int64(w.KnownLimits()))
				if err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
					t.Errorf("seed %d: %v\nreplay: go test ./sim -run 'TestSimulation$' -sim.seed=%d", seed, err, seed)
					if schedule, sw := Shrink(o, w.Injected(), 3); sw != nil {
						t.Errorf("seed %d shrunk to %d of %d injections; as a scenario file (keep it under core/sim/testdata):\n%s\n%v",
							seed, len(schedule), len(w.Injected()), FormatScenario(o, schedule), sw.Err())
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("%d seeds, %d steps, %d decisions in %s: %.0f steps/s, %d failed; %d replicas left by the known limit (docs/simulation.md)",
		seeds, steps.Load(), decisions.Load(), el.Round(time.Millisecond), float64(steps.Load())/el.Seconds(), len(failed), limits.Load())
}
