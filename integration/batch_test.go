//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Job runs to completion and a CronJob with */1 makes a Job within a minute, with
// kubectl as against a real cluster.
func TestJobsAndCronJobs(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *", "--", "sh", "-c", "echo tick")
	kubectl("create", "job", "pi", "--image=busybox", "--", "sh", "-c", "echo 3.14159")
	kubectl("wait", "--for=condition=complete", "job/pi", "--timeout=60s")
	if out := kubectl("logs", "job/pi"); strings.TrimSpace(out) != "3.14159" {
		t.Errorf("job logs %q", out)
	}
	if out := kubectl("get", "job", "pi"); !hasRow(out, "pi", "Complete", "1/1") {
		t.Errorf("kubectl get job:\n%s", out)
	}
	// A failing job gives up after backoffLimit.
	manifest := filepath.Join(t.TempDir(), "fail.json")
	os.WriteFile(manifest, []byte(`{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"fail"},"spec":{"backoffLimit":0,
		"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox","command":["false"]}]}}}}`), 0o644)
	kubectl("create", "-f", manifest)
	kubectl("wait", "--for=condition=failed", "job/fail", "--timeout=60s")
	if out := kubectl("get", "job", "fail", "-o", `jsonpath={.status.conditions[?(@.type=="Failed")].reason}`); out != "BackoffLimitExceeded" {
		t.Errorf("failed job's reason %q", out)
	}
	// The CronJob's first Job comes at the next minute.
	eventually(t, 75*time.Second, func() error {
		out, _, _ := n.exec("kubectl", "get", "jobs", "-o", "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name} {.status.succeeded}{\"\\n\"}{end}")
		for _, line := range strings.Split(out, "\n") {
			if line == "tick 1" {
				return nil
			}
		}
		return fmt.Errorf("no completed job of the cronjob yet: %q", out)
	})
	if out := kubectl("get", "cronjob", "tick"); !hasRow(out, "tick", "*/1", "*", "*", "*", "*", "<none>", "False") {
		t.Errorf("kubectl get cronjob:\n%s", out)
	}
	kubectl("create", "job", "manual", "--from=cronjob/tick")
	kubectl("wait", "--for=condition=complete", "job/manual", "--timeout=60s")
}

// An Indexed job runs one pod per index, each knowing its index; a pod failure policy
// fails a job at once on the exit code it names.
func TestIndexedJobAndFailurePolicy(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	manifest := filepath.Join(t.TempDir(), "jobs.yaml")
	os.WriteFile(manifest, []byte(`
apiVersion: batch/v1
kind: Job
metadata: {name: idx}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: busybox, command: [sh, -c, 'echo "index=$JOB_COMPLETION_INDEX host=$(hostname)"']}
---
apiVersion: batch/v1
kind: Job
metadata: {name: policy}
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {operator: In, values: [42]}
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: busybox, command: [sh, -c, 'exit 42']}
`), 0o644)
	kubectl("apply", "-f", manifest)
	kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=60s")
	if got := kubectl("get", "job", "idx", "-o", "jsonpath={.status.completedIndexes}"); got != "0-2" {
		t.Errorf("completedIndexes %q", got)
	}
	for i := range 3 {
		pod := kubectl("get", "pods", "-l", fmt.Sprintf("batch.kubernetes.io/job-completion-index=%d,job-name=idx", i), "-o", "jsonpath={.items[0].metadata.name}")
		if out := kubectl("logs", pod); out != fmt.Sprintf("index=%d host=idx-%d\n", i, i) {
			t.Errorf("index %d: %q", i, out)
		}
	}
	kubectl("wait", "--for=condition=failed", "job/policy", "--timeout=60s")
	got := kubectl("get", "job", "policy", "-o", `jsonpath={.status.conditions[?(@.type=="Failed")].reason}:{.status.failed}`)
	if got != "PodFailurePolicy:1" {
		t.Errorf("failed job: %s", got)
	}
}
