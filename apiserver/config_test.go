package apiserver

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestConfigMapsSecretsServiceAccounts(t *testing.T) {
	s := newTestServer(t)
	const cms, secrets, sas = "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/secrets", "/api/v1/namespaces/default/serviceaccounts"
	table := []string{"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
	runSteps(t, s, []step{
		{name: "configmap", method: "POST", path: cms, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"cfg"},"data":{"a.conf":"x=1"},"binaryData":{"b":"AAE="},"immutable":true}`},
		{name: "configmap table", method: "GET", path: cms, headers: table, wantCode: 200, check: func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), `"cells":["cfg",2,`) {
				t.Errorf("table %s", r.body)
			}
		}},
		{name: "immutable configmap refuses new data", method: "PATCH", path: cms + "/cfg", contentType: mergeCT,
			body: `{"data":{"a.conf":"x=2"}}`, wantCode: 422, check: wantCauses("data")},
		{name: "immutable configmap cannot be made mutable", method: "PATCH", path: cms + "/cfg", contentType: mergeCT,
			body: `{"immutable":false}`, wantCode: 422, check: wantCauses("immutable")},
		{name: "bad keys", method: "POST", path: cms, contentType: jsonCT, wantCode: 422,
			body:  `{"metadata":{"name":"bad"},"data":{"a b":"1","k":"1"},"binaryData":{"k":"AA=="}}`,
			check: wantCauses("data[a b]", "data[k]")},
		{name: "secret from stringData", method: "POST", path: secrets, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"db"},"stringData":{"password":"hunter2"},"data":{"user":"YWRtaW4="}}`,
			check: func(t *testing.T, r response) {
				wantField("Opaque", "type")(t, r)
				wantField(base64.StdEncoding.EncodeToString([]byte("hunter2")), "data", "password")(t, r)
				if get(r.object(), "stringData") != nil {
					t.Errorf("stringData stored: %s", r.body)
				}
			}},
		{name: "secret type is immutable", method: "PATCH", path: secrets + "/db", contentType: mergeCT,
			body: `{"type":"kubernetes.io/tls"}`, wantCode: 422, check: wantCauses("type")},
		{name: "tls secret needs its keys", method: "POST", path: secrets, contentType: jsonCT, wantCode: 422,
			body: `{"metadata":{"name":"tls"},"type":"kubernetes.io/tls","data":{}}`, check: wantCauses("data[tls.crt]", "data[tls.key]")},
		{name: "token secret needs its account", method: "POST", path: secrets, contentType: jsonCT, wantCode: 422,
			body:  `{"metadata":{"name":"tok"},"type":"kubernetes.io/service-account-token"}`,
			check: wantCauses("metadata.annotations[kubernetes.io/service-account.name]")},
		{name: "secret by type", method: "GET", path: secrets + "?fieldSelector=type%3DOpaque", wantCode: 200, check: func(t *testing.T, r response) {
			if items, _ := get(r.object(), "items").([]any); len(items) != 1 {
				t.Errorf("selected %d: %s", len(items), r.body)
			}
		}},
		{name: "secret by other type", method: "GET", path: secrets + "?fieldSelector=type!%3DOpaque", wantCode: 200, check: func(t *testing.T, r response) {
			if items, _ := get(r.object(), "items").([]any); len(items) != 0 {
				t.Errorf("selected %d: %s", len(items), r.body)
			}
		}},
		{name: "secret table", method: "GET", path: secrets + "/db", headers: table, wantCode: 200, check: func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), `"cells":["db","Opaque",2,`) {
				t.Errorf("table %s", r.body)
			}
		}},
		{name: "service account", method: "POST", path: sas, contentType: jsonCT, body: `{"metadata":{"name":"builder"}}`, wantCode: 201},
		{name: "pod gets the default account", method: "POST", path: podsPath, contentType: jsonCT, body: podJSON("p", `{}`), wantCode: 201,
			check: func(t *testing.T, r response) {
				wantField("default", "spec", "serviceAccountName")(t, r)
				wantField("default", "spec", "serviceAccount")(t, r)
			}},
		{name: "pod with its account", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 201,
			body: strings.Replace(podJSON("q", `{}`), `"spec":{`, `"spec":{"serviceAccountName":"builder",`, 1)},
		{name: "pod by account", method: "GET", path: podsPath + "?fieldSelector=spec.serviceAccountName%3Dbuilder", wantCode: 200,
			check: func(t *testing.T, r response) {
				if items, _ := get(r.object(), "items").([]any); len(items) != 1 || get(items[0], "metadata", "name") != "q" {
					t.Errorf("selected %v", items)
				}
			}},
		{name: "pod with a missing account", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 403,
			body: strings.Replace(podJSON("r", `{}`), `"spec":{`, `"spec":{"serviceAccountName":"ghost",`, 1),
			check: func(t *testing.T, r response) {
				if want := `error looking up service account default/ghost: serviceaccount "ghost" not found`; !strings.Contains(r.status().Message, want) {
					t.Errorf("message %q", r.status().Message)
				}
			}},
	})
}

func TestFieldSelectorsOfServicesAndNodes(t *testing.T) {
	s := newTestServer(t)
	s.do(t, "POST", "/api/v1/namespaces/default/services", jsonCT, svcJSON)
	s.do(t, "POST", "/api/v1/namespaces/default/services", jsonCT,
		`{"metadata":{"name":"headless"},"spec":{"clusterIP":"None","selector":{"app":"db"},"ports":[{"port":5432}]}}`)
	s.do(t, "POST", "/api/v1/nodes", jsonCT, `{"metadata":{"name":"n1"},"spec":{"unschedulable":true}}`)
	s.do(t, "POST", "/api/v1/nodes", jsonCT, `{"metadata":{"name":"n2"}}`)
	names := func(want ...string) func(t *testing.T, r response) {
		return func(t *testing.T, r response) {
			var got []string
			items, _ := get(r.object(), "items").([]any)
			for _, it := range items {
				got = append(got, get(it, "metadata", "name").(string))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("selected %v, want %v", got, want)
			}
		}
	}
	runSteps(t, s, []step{
		// kube-proxy's list
		{name: "not headless", method: "GET", path: "/api/v1/services?fieldSelector=spec.clusterIP!%3DNone", wantCode: 200,
			check: names("backend", "kubernetes")},
		{name: "by type", method: "GET", path: "/api/v1/services?fieldSelector=spec.type%3D%3DClusterIP,metadata.namespace%3Ddefault", wantCode: 200,
			check: names("backend", "headless", "kubernetes")},
		// the e2e suite's list
		{name: "schedulable nodes", method: "GET", path: "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse", wantCode: 200,
			check: names("n2")},
	})
}

// A status write may change metadata too (kube-apiserver's status strategies), never spec.
func TestStatusWriteKeepsMetadataChanges(t *testing.T) {
	s := newTestServer(t)
	s.do(t, "POST", "/api/v1/namespaces/default/services", jsonCT, svcJSON)
	runSteps(t, s, []step{
		{name: "status patch", method: "PATCH", path: "/api/v1/namespaces/default/services/backend/status", contentType: mergeCT, wantCode: 200,
			body: `{"metadata":{"annotations":{"note":"x"}},"spec":{"type":"NodePort"},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1"}]}}}`},
		{name: "read back", method: "GET", path: "/api/v1/namespaces/default/services/backend", wantCode: 200, check: func(t *testing.T, r response) {
			wantField("x", "metadata", "annotations", "note")(t, r)
			wantField("ClusterIP", "spec", "type")(t, r)
			wantField("192.0.2.1", "status", "loadBalancer", "ingress", 0, "ip")(t, r)
		}},
		// A deployment's status keeps its labels (deploymentStatusStrategy), the rest of
		// its metadata may change.
		{name: "deployment", method: "POST", path: "/apis/apps/v1/namespaces/default/deployments", contentType: jsonCT, body: deployJSON, wantCode: 201},
		{name: "deployment status patch", method: "PATCH", path: "/apis/apps/v1/namespaces/default/deployments/web/status", contentType: mergeCT, wantCode: 200,
			body: `{"metadata":{"labels":{"l":"patched-status"},"annotations":{"note":"y"}},"status":{"readyReplicas":7}}`},
		{name: "deployment read back", method: "GET", path: "/apis/apps/v1/namespaces/default/deployments/web", wantCode: 200, check: func(t *testing.T, r response) {
			wantField(nil, "metadata", "labels")(t, r)
			wantField("y", "metadata", "annotations", "note")(t, r)
			wantField(7.0, "status", "readyReplicas")(t, r)
		}},
	})
}

func TestReviews(t *testing.T) {
	s := newTestServer(t)
	const ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
	runSteps(t, s, []step{
		{name: "may I", method: "POST", path: ssar, contentType: jsonCT, wantCode: 201,
			body:  `{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"verb":"list","resource":"pods"}}}`,
			check: wantField(true, "status", "allowed")},
		{name: "a question is needed", method: "POST", path: ssar, contentType: jsonCT, wantCode: 422,
			body: `{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{}}`, check: wantCauses("spec")},
		{name: "reviews are not stored", method: "GET", path: ssar, wantCode: 405},
		{name: "who am I (the socket)", method: "POST", path: "/apis/authentication.k8s.io/v1/selfsubjectreviews", contentType: jsonCT, wantCode: 201,
			body: `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`, check: wantField("system:minicluster", "status", "userInfo", "username")},
		{name: "what may I", method: "POST", path: "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", contentType: jsonCT, wantCode: 201,
			body:  `{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectRulesReview","spec":{"namespace":"default"}}`,
			check: wantField("*", "status", "resourceRules", 0, "verbs", 0)},
	})
}

// events.k8s.io/v1 serves the core events in its own shape, both ways, and watches.
func TestEventsV1(t *testing.T) {
	s := newTestServer(t)
	const v1events, coreEvents = "/apis/events.k8s.io/v1/namespaces/default/events", "/api/v1/namespaces/default/events"
	runSteps(t, s, []step{
		{name: "kube-proxy's event", method: "POST", path: v1events, contentType: jsonCT, wantCode: 201,
			body: `{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"n1.start"},"eventTime":"2026-12-05T10:00:00.000000Z",
			 "reportingController":"kube-proxy","reportingInstance":"kube-proxy-n1","action":"StartKubeProxy","reason":"Starting",
			 "regarding":{"kind":"Node","name":"n1"},"note":"","type":"Normal"}`},
		{name: "seen as a core event", method: "GET", path: coreEvents + "/n1.start", wantCode: 200, check: func(t *testing.T, r response) {
			wantField("Node", "involvedObject", "kind")(t, r)
			wantField("kube-proxy", "reportingComponent")(t, r)
			wantField("Event", "kind")(t, r)
			wantField("v1", "apiVersion")(t, r)
		}},
		{name: "a core event", method: "POST", path: coreEvents, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"p.1"},"involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"Started","message":"Started container c","type":"Normal","count":2,"source":{"component":"kubelet"}}`},
		{name: "seen as events.k8s.io", method: "GET", path: v1events + "/p.1", wantCode: 200, check: func(t *testing.T, r response) {
			wantField("Pod", "regarding", "kind")(t, r)
			wantField("Started container c", "note")(t, r)
			wantField(float64(2), "deprecatedCount")(t, r)
			wantField("kubelet", "deprecatedSource", "component")(t, r)
			wantField("events.k8s.io/v1", "apiVersion")(t, r)
		}},
		{name: "selected by what it regards", method: "GET", path: v1events + "?fieldSelector=regarding.kind%3DNode", wantCode: 200,
			check: func(t *testing.T, r response) {
				if items, _ := get(r.object(), "items").([]any); len(items) != 1 || get(items[0], "metadata", "name") != "n1.start" {
					t.Errorf("selected %v", items)
				}
			}},
		{name: "patched through the view", method: "PATCH", path: v1events + "/p.1", contentType: mergeCT, wantCode: 200,
			body: `{"note":"Restarted container c"}`, check: wantField("Restarted container c", "note")},
		{name: "the patch is in the core event", method: "GET", path: coreEvents + "/p.1", wantCode: 200,
			check: wantField("Restarted container c", "message")},
		{name: "events.k8s.io needs its fields", method: "POST", path: v1events, contentType: jsonCT, wantCode: 422,
			body:  `{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"bad"},"type":"Normal"}`,
			check: wantCauses("eventTime", "reportingController", "reportingInstance", "action", "reason")},
		{name: "deleted through the view", method: "DELETE", path: v1events + "/p.1", wantCode: 200},
		{name: "gone from core", method: "GET", path: coreEvents + "/p.1", wantCode: 404},
	})
}

// kube-apiserver 1.32's readings that differ from a strict parser: leading zeros in an
// IP are decimal (and the address is then taken), an ExternalName may end with a dot.
func TestServiceValidationAsKubernetes(t *testing.T) {
	s := newTestServer(t)
	const svcs = "/api/v1/namespaces/default/services"
	runSteps(t, s, []step{
		{name: "leading zeros", method: "POST", path: svcs, contentType: jsonCT, wantCode: 201,
			body:  `{"metadata":{"name":"zeros"},"spec":{"clusterIP":"10.96.0.011","ports":[{"port":80}]}}`,
			check: wantField("10.96.0.011", "spec", "clusterIPs", 0)},
		{name: "the same address spelled plainly", method: "POST", path: svcs, contentType: jsonCT, wantCode: 422,
			body: `{"metadata":{"name":"plain"},"spec":{"clusterIP":"10.96.0.11","ports":[{"port":80}]}}`, check: wantCauses("spec.clusterIPs[0]")},
		{name: "freed with its service", method: "DELETE", path: svcs + "/zeros", wantCode: 200},
		{name: "then free", method: "POST", path: svcs, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"plain"},"spec":{"clusterIP":"10.96.0.11","ports":[{"port":80}]}}`},
		{name: "external name with a trailing dot", method: "POST", path: svcs, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"ext"},"spec":{"type":"ExternalName","externalName":"www.example.com."}}`},
		{name: "to ExternalName: the cluster IP goes", method: "PATCH", path: svcs + "/plain", contentType: mergeCT, wantCode: 200,
			body: `{"spec":{"type":"ExternalName","externalName":"db.example.com"}}`, check: func(t *testing.T, r response) {
				if ip := get(r.object(), "spec", "clusterIP"); ip != nil {
					t.Errorf("clusterIP %v", ip)
				}
			}},
		{name: "and is free again", method: "POST", path: svcs, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"again"},"spec":{"clusterIP":"10.96.0.11","ports":[{"port":80}]}}`},
		{name: "NodePort to ClusterIP: the node ports go", method: "POST", path: svcs, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"np"},"spec":{"type":"NodePort","ports":[{"port":80}]}}`},
		{name: "patched to ClusterIP", method: "PATCH", path: svcs + "/np", contentType: mergeCT, wantCode: 200,
			body: `{"spec":{"type":"ClusterIP"}}`, check: func(t *testing.T, r response) {
				if np := get(r.object(), "spec", "ports", 0, "nodePort"); np != nil {
					t.Errorf("nodePort %v", np)
				}
			}},
		{name: "not an address", method: "POST", path: svcs, contentType: jsonCT, wantCode: 422,
			body: `{"metadata":{"name":"bad"},"spec":{"clusterIP":"10.96.0.300","ports":[{"port":80}]}}`, check: wantCauses("spec.clusterIP")},
	})
}

// pods/eviction deletes a pod unless its disruption budget has no disruption left; it
// takes one from the budget.
func TestEviction(t *testing.T) {
	s := newTestServer(t)
	const pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
	evict := func(name string) string {
		return `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"` + name + `","namespace":"default"}}`
	}
	runSteps(t, s, []step{
		{name: "pod", method: "POST", path: podsPath, contentType: jsonCT, body: podJSON("a", `{"app":"web"}`), wantCode: 201},
		{name: "running", method: "PATCH", path: podsPath + "/a/status", contentType: mergeCT, body: `{"status":{"phase":"Running"}}`, wantCode: 200},
		{name: "budget", method: "POST", path: pdbs, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"web"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"web"}}}}`},
		{name: "budget status: none allowed", method: "PATCH", path: pdbs + "/web/status", contentType: mergeCT, wantCode: 200,
			body: `{"status":{"observedGeneration":1,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1,"disruptionsAllowed":0}}`},
		{name: "held back", method: "POST", path: podsPath + "/a/eviction", contentType: jsonCT, body: evict("a"), wantCode: 429,
			check: func(t *testing.T, r response) {
				if st := r.status(); st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Type != "DisruptionBudget" {
					t.Errorf("status %s", r.body)
				}
			}},
		{name: "budget status: one allowed", method: "PATCH", path: pdbs + "/web/status", contentType: mergeCT, wantCode: 200,
			body: `{"status":{"disruptionsAllowed":1}}`},
		{name: "evicted", method: "POST", path: podsPath + "/a/eviction", contentType: jsonCT, body: evict("a"), wantCode: 201},
		{name: "the budget paid", method: "GET", path: pdbs + "/web", wantCode: 200, check: func(t *testing.T, r response) {
			wantField(float64(0), "status", "disruptionsAllowed")(t, r)
			if get(r.object(), "status", "disruptedPods", "a") == nil {
				t.Errorf("disruptedPods: %s", r.body)
			}
		}},
		{name: "the pod goes", method: "GET", path: podsPath + "/a", wantCode: 404},
		{name: "a name that does not match", method: "POST", path: podsPath + "/b/eviction", contentType: jsonCT, body: evict("a"), wantCode: 400},
	})
}

// RuntimeClasses are admitted as the RuntimeClass admission plugin does: a pod naming
// a class that does not exist is forbidden; the class's overhead becomes the pod's.
// PodTemplates are stored and validated.
func TestRuntimeClassesAndPodTemplates(t *testing.T) {
	s := newTestServer(t)
	rcPod := func(name, class string) string {
		return `{"metadata":{"name":"` + name + `"},"spec":{"runtimeClassName":"` + class + `","containers":[{"name":"c","image":"busybox"}]}}`
	}
	runSteps(t, s, []step{
		{name: "no such class", method: "POST", path: podsPath, contentType: jsonCT, body: rcPod("p1", "gone"), wantCode: 403,
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.status().Message, `pod rejected: RuntimeClass "gone" not found`) {
					t.Errorf("message %q", r.status().Message)
				}
			}},
		{name: "bad handler", method: "POST", path: "/apis/node.k8s.io/v1/runtimeclasses", contentType: jsonCT, wantCode: 422,
			body: `{"metadata":{"name":"bad"},"handler":"Not_A_Label"}`},
		{name: "class", method: "POST", path: "/apis/node.k8s.io/v1/runtimeclasses", contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"fast"},"handler":"test-handler","overhead":{"podFixed":{"cpu":"10m","memory":"1Mi"}}}`},
		{name: "pod of the class gets its overhead", method: "POST", path: podsPath, contentType: jsonCT, body: rcPod("p2", "fast"), wantCode: 201,
			check: func(t *testing.T, r response) {
				if get(r.object(), "spec", "overhead", "cpu") != "10m" || get(r.object(), "spec", "overhead", "memory") != "1Mi" {
					t.Errorf("overhead %v", get(r.object(), "spec", "overhead"))
				}
			}},
		{name: "pod template", method: "POST", path: "/api/v1/namespaces/default/podtemplates", contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"t"},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}`},
		{name: "invalid pod template", method: "POST", path: "/api/v1/namespaces/default/podtemplates", contentType: jsonCT, wantCode: 422,
			body: `{"metadata":{"name":"u"},"template":{"spec":{"containers":[]}}}`},
		{name: "delete a collection of templates", method: "DELETE", path: "/api/v1/namespaces/default/podtemplates", wantCode: 200},
		{name: "gone", method: "GET", path: "/api/v1/namespaces/default/podtemplates/t", wantCode: 404},
	})
}

// NetworkPolicies are validated and defaulted as kube-apiserver does (the e2e suite's
// "Netpol API ... endport field").
func TestNetworkPolicyValidation(t *testing.T) {
	s := newTestServer(t)
	path := "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
	np := func(name, ports string) string {
		return `{"metadata":{"name":"` + name + `"},"spec":{"podSelector":{},"egress":[{"ports":[` + ports + `]}]}}`
	}
	runSteps(t, s, []step{
		{name: "endPort without port", method: "POST", path: path, contentType: jsonCT, body: np("a", `{"endPort":20000}`), wantCode: 422},
		{name: "endPort after a named port", method: "POST", path: path, contentType: jsonCT, body: np("b", `{"port":"serve-80","endPort":20000}`), wantCode: 422},
		{name: "endPort below port", method: "POST", path: path, contentType: jsonCT, body: np("c", `{"port":30000,"endPort":20000}`), wantCode: 422,
			check: func(t *testing.T, r response) {
				if c := r.status().Details.Causes; len(c) != 1 || c[0].Field != "spec.egress[0].ports[0].endPort" {
					t.Errorf("causes %+v", c)
				}
			}},
		{name: "bad peer", method: "POST", path: path, contentType: jsonCT, wantCode: 422,
			body: `{"metadata":{"name":"d"},"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["11.0.0.0/16"]}}]}]}}`},
		{name: "endPort equal to port, defaults", method: "POST", path: path, contentType: jsonCT, body: np("e", `{"port":20000,"endPort":20000}`), wantCode: 201,
			check: func(t *testing.T, r response) {
				if get(r.object(), "spec", "policyTypes", 1) != "Egress" || get(r.object(), "spec", "egress", 0, "ports", 0, "protocol") != "TCP" {
					t.Errorf("not defaulted: %s", r.body)
				}
			}},
	})
}
