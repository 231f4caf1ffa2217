package k8s_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/flashgate/flashgate/internal/config"
)

// overlays are the kustomizations a person applies; each is rendered and
// checked on its own.
var overlays = []string{"overlays/dev", "overlays/prod", "observability"}

// object is one rendered resource: its kind and its JSON.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	raw []byte
	typ any // the decoded k8s.io/api value, nil for a custom resource
}

func (o object) id() string { return o.Kind + "/" + o.Metadata.Name }

// devSecrets is what `make k8s-secrets` writes, made afresh for the test
// when the developer has not made any (the file is kept out of git).
func devSecrets() string {
	r := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		return strings.NewReplacer("/", "", "+", "", "=", "").Replace(base64.StdEncoding.EncodeToString(b))
	}
	pw := r(24)
	return "FLASHGATE_TOKEN_SECRET=" + r(48) + "\nFLASHGATE_PAY_SECRET=" + r(48) +
		"\nMARIADB_ROOT_PASSWORD=" + pw + "\nFLASHGATE_MYSQL_DSN=root:" + pw + "@tcp(mariadb:3306)/flashgate\n"
}

// render builds the kustomization dir (relative to k8s/) with the kustomize
// API, from an in-memory copy of k8s/ so that the test writes nothing.
func render(t *testing.T, dir string) []object {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/k8s", p), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !mem.Exists("/k8s/overlays/dev/secrets.env") {
		if err := mem.WriteFile("/k8s/overlays/dev/secrets.env", []byte(devSecrets())); err != nil {
			t.Fatal(err)
		}
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(mem, filepath.Join("/k8s", dir))
	if err != nil {
		t.Fatalf("kustomize build k8s/%s: %v", dir, err)
	}
	var objs []object
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		var o object
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		o.raw = b
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		t.Fatalf("k8s/%s renders no object", dir)
	}
	return objs
}

// typed are the built-in kinds the manifests use, each decoded into its
// k8s.io/api type.
var typed = map[string]func() any{
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                    func() any { return new(appsv1.StatefulSet) },
	"batch/v1/Job":                           func() any { return new(batchv1.Job) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
}

// custom are the custom resources the manifests use (Strimzi, KEDA, the
// Prometheus operator), whose types this module does not import: each is
// checked for the fields its operator cannot do without.
var custom = map[string][]string{
	"kafka.strimzi.io/v1beta2/Kafka":          {"spec.kafka.listeners", "spec.kafka.config", "spec.entityOperator"},
	"kafka.strimzi.io/v1beta2/KafkaNodePool":  {"spec.replicas", "spec.roles", "spec.storage"},
	"kafka.strimzi.io/v1beta2/KafkaTopic":     {"spec.partitions", "spec.replicas", "spec.config"},
	"kafka.strimzi.io/v1beta2/KafkaUser":      {"spec.authentication.type", "spec.authorization.acls"},
	"keda.sh/v1alpha1/ScaledObject":           {"spec.scaleTargetRef.name", "spec.maxReplicaCount", "spec.triggers"},
	"keda.sh/v1alpha1/TriggerAuthentication":  {"spec.secretTargetRef"},
	"monitoring.coreos.com/v1/PodMonitor":     {"spec.selector", "spec.podMetricsEndpoints"},
	"monitoring.coreos.com/v1/PrometheusRule": {"spec.groups"},
}

// decode decodes every object strictly: a field its type does not have
// fails, as the API server's strict field validation would.
func decode(t *testing.T, dir string, objs []object) {
	t.Helper()
	for i := range objs {
		o := &objs[i]
		gvk := o.APIVersion + "/" + o.Kind
		if mk, ok := typed[gvk]; ok {
			v := mk()
			d := json.NewDecoder(bytes.NewReader(o.raw))
			d.DisallowUnknownFields()
			if err := d.Decode(v); err != nil {
				t.Errorf("%s: %s does not decode strictly into its k8s.io/api type: %v", dir, o.id(), err)
			}
			o.typ = v
			continue
		}
		paths, ok := custom[gvk]
		if !ok {
			t.Errorf("%s: %s: %s is a kind this test does not know: add it to typed or custom", dir, o.id(), gvk)
			continue
		}
		var u map[string]any
		if err := json.Unmarshal(o.raw, &u); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if lookupPath(u, p) == nil {
				t.Errorf("%s: %s has no %s", dir, o.id(), p)
			}
		}
	}
}

func lookupPath(u map[string]any, path string) any {
	var cur any = u
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func TestManifestsRender(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			decode(t, dir, objs)
			seen := map[string]bool{}
			for _, o := range objs {
				if seen[o.id()] {
					t.Errorf("%s: %s twice", dir, o.id())
				}
				seen[o.id()] = true
			}
		})
	}
}

// podSpecs are the pod templates of the workloads, by workload.
type workload struct {
	id       string
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func workloads(objs []object) []workload {
	var ws []workload
	for _, o := range objs {
		switch v := o.typ.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o.id(), v.Spec.Selector, v.Spec.Template})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o.id(), v.Spec.Selector, v.Spec.Template})
		case *batchv1.Job:
			ws = append(ws, workload{o.id(), nil, v.Spec.Template})
		}
	}
	return ws
}

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

// pinned: an image names an exact version (a tag that is not latest) or a
// digest, so a rollout runs what was tested.
func pinned(image string) bool {
	if _, digest, ok := strings.Cut(image, "@sha256:"); ok {
		return len(digest) == 64
	}
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon < slash+1 {
		return false
	}
	tag := image[colon+1:]
	return tag != "" && tag != "latest" && regexp.MustCompile(`[0-9]`).MatchString(tag)
}

// secretish names settings whose values are secrets wherever they appear.
var secretish = regexp.MustCompile(`(?i)(SECRET|PASSWORD|PASSWD|_DSN|TOKEN$|_KEY$)`)

// external are the Secrets an overlay expects to exist already: made by an
// operator (prod: flashgate) or by Strimzi (the KafkaUser's password and
// the cluster CA).
var external = map[string][]string{
	"overlays/prod": {"flashgate", "flashgate-app", "flashgate-cluster-ca-cert"},
}

// secretRefs are the Secret names an object refers to: in pods (envFrom,
// secretKeyRef, volumes) and in KEDA's TriggerAuthentication, where
// kustomize does not rewrite a generated name.
func secretRefs(o object) []string {
	var refs []string
	var pod *corev1.PodSpec
	switch v := o.typ.(type) {
	case *appsv1.Deployment:
		pod = &v.Spec.Template.Spec
	case *appsv1.StatefulSet:
		pod = &v.Spec.Template.Spec
	case *batchv1.Job:
		pod = &v.Spec.Template.Spec
	}
	if pod != nil {
		for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					refs = append(refs, ef.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs = append(refs, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
		for _, v := range pod.Volumes {
			if v.Secret != nil {
				refs = append(refs, v.Secret.SecretName)
			}
		}
	}
	if o.Kind == "TriggerAuthentication" {
		var ta struct {
			Spec struct {
				SecretTargetRef []struct {
					Name string `json:"name"`
				} `json:"secretTargetRef"`
			} `json:"spec"`
		}
		json.Unmarshal(o.raw, &ta)
		for _, r := range ta.Spec.SecretTargetRef {
			refs = append(refs, r.Name)
		}
	}
	return refs
}

func TestManifestsInvariants(t *testing.T) {
	for _, dir := range []string{"overlays/dev", "overlays/prod"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			decode(t, dir, objs)
			checkInvariants(t, dir, objs)
			have := map[string]bool{}
			for _, o := range objs {
				if o.Kind == "Secret" {
					have[o.Metadata.Name] = true
				}
			}
			for _, n := range external[dir] {
				have[n] = true
			}
			for _, o := range objs {
				for _, ref := range secretRefs(o) {
					if !have[ref] {
						t.Errorf("%s: %s refers to Secret %s, which the overlay neither makes nor expects from outside", dir, o.id(), ref)
					}
				}
			}
		})
	}
}

func checkInvariants(t *testing.T, dir string, objs []object) {
	ws := workloads(objs)
	var pods []map[string]string
	for _, w := range ws {
		pods = append(pods, w.pod.Labels)
	}
	anySelected := func(sel *metav1.LabelSelector) bool {
		for _, l := range pods {
			if selects(t, sel, l) {
				return true
			}
		}
		return false
	}
	configMaps := map[string]map[string]string{}
	secrets := map[string]map[string]string{}
	for _, o := range objs {
		switch v := o.typ.(type) {
		case *corev1.ConfigMap:
			configMaps[v.Name] = v.Data
			for k, val := range v.Data {
				if secretish.MatchString(k) && val != "" {
					t.Errorf("%s: ConfigMap %s holds %s: a secret belongs in a Secret", dir, v.Name, k)
				}
			}
		case *corev1.Secret:
			secrets[v.Name] = map[string]string{}
			for k, b := range v.Data {
				secrets[v.Name][k] = string(b)
			}
			for k, s := range v.StringData {
				secrets[v.Name][k] = s
			}
		case *corev1.Service:
			if len(v.Spec.Selector) == 0 || !anySelected(metav1.SetAsLabelSelector(v.Spec.Selector)) {
				t.Errorf("%s: Service %s selects no pod (selector %v)", dir, v.Name, v.Spec.Selector)
			}
		case *policyv1.PodDisruptionBudget:
			if !anySelected(v.Spec.Selector) {
				t.Errorf("%s: PodDisruptionBudget %s selects no pod", dir, v.Name)
			}
		case *networkingv1.NetworkPolicy:
			if !anySelected(&v.Spec.PodSelector) {
				t.Errorf("%s: NetworkPolicy %s selects no pod", dir, v.Name)
			}
		}
	}
	for _, w := range ws {
		if w.selector != nil && !selects(t, w.selector, w.pod.Labels) {
			t.Errorf("%s: %s: the selector %v does not match its pod labels %v", dir, w.id, w.selector.MatchLabels, w.pod.Labels)
		}
		spec := w.pod.Spec
		for _, c := range spec.TopologySpreadConstraints {
			if !selects(t, c.LabelSelector, w.pod.Labels) {
				t.Errorf("%s: %s: topology spread on %s does not select its own pods", dir, w.id, c.TopologyKey)
			}
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			checkContainer(t, dir, w.id, spec, c, configMaps, secrets)
		}
	}
}

func checkContainer(t *testing.T, dir, id string, spec corev1.PodSpec, c corev1.Container,
	configMaps map[string]map[string]string, secrets map[string]map[string]string) {
	where := fmt.Sprintf("%s: %s container %s", dir, id, c.Name)
	if !pinned(c.Image) {
		t.Errorf("%s: image %q is not pinned to a version or digest", where, c.Image)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: want CPU and memory requests and a memory limit", where)
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
		ports[fmt.Sprint(p.ContainerPort)] = true
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		var port string
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port.String()
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port.String()
		case p.GRPC != nil:
			port = fmt.Sprint(p.GRPC.Port)
		default:
			continue
		}
		if !ports[port] {
			t.Errorf("%s: a probe uses port %s, which is not a container port", where, port)
		}
	}
	for _, e := range c.Env {
		if e.Value != "" && secretish.MatchString(e.Name) {
			t.Errorf("%s: %s is set inline: a secret comes from a Secret (secretKeyRef or envFrom)", where, e.Name)
		}
	}
	if !strings.Contains(c.Image, "flashgate") {
		return
	}

	// The flashgate containers: hardened, and configured the way the
	// binary accepts.
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: the pod must run as a non-root user", where)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: want a read-only root filesystem, no privilege escalation and every capability dropped", where)
	}
	if len(c.Args) == 0 {
		t.Fatalf("%s: no subcommand in args", where)
	}
	service := c.Args[0]
	env := map[string]string{}
	fromSecret := map[string]bool{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := configMaps[ef.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom names ConfigMap %s, which the overlay does not make", where, ef.ConfigMapRef.Name)
			}
			for k, v := range cm {
				env[k] = v
			}
		case ef.SecretRef != nil:
			s, ok := secrets[ef.SecretRef.Name]
			if !ok {
				// An outside Secret (prod): the checks below stand in
				// good values for the secret settings.
				s = map[string]string{}
				for _, v := range config.Vars {
					if v.Secret {
						s[v.Name] = ""
					}
				}
			}
			for k, v := range s {
				env[k] = v
				fromSecret[k] = true
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			env[e.Name] = secrets[ref.Name][ref.Key] // "" for an outside Secret
			fromSecret[e.Name] = true
		case e.ValueFrom != nil:
		default:
			env[e.Name] = e.Value
			delete(fromSecret, e.Name)
		}
	}
	if service == "gateway" || service == "worker" || service == "ws" || service == "migrate" {
		for _, v := range config.Vars {
			_, set := env[v.Name]
			if v.Secret {
				if set && !fromSecret[v.Name] {
					t.Errorf("%s: secret %s does not come from a Secret", where, v.Name)
				}
				continue
			}
			if !set {
				t.Errorf("%s: %s is not set: the ConfigMap lists every setting that is not a secret", where, v.Name)
			}
		}
	}
	// A secret that an outside Secret holds gets a stand-in of the length
	// the services want; a CA file, which a volume brings, is checked to be
	// mounted and then left out (its content is not here).
	lookupEnv := map[string]string{}
	for k, v := range env {
		lookupEnv[k] = v
	}
	for _, v := range config.Vars {
		if v.Secret && fromSecret[v.Name] && lookupEnv[v.Name] == "" {
			if v.Name == "FLASHGATE_KAFKA_SASL_PASSWORD" && lookupEnv["FLASHGATE_KAFKA_SASL_MECHANISM"] == "" {
				continue
			}
			if v.Name == "FLASHGATE_TOKEN_SECRET_PREVIOUS" { // set only during a rotation
				continue
			}
			lookupEnv[v.Name] = strings.Repeat("s", config.MinSecretLen) + v.Name
		}
	}
	for _, ca := range []string{"FLASHGATE_KAFKA_TLS_CA", "FLASHGATE_REDIS_TLS_CA"} {
		if p := lookupEnv[ca]; p != "" {
			mounted := false
			for _, m := range c.VolumeMounts {
				if strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("%s: %s=%s is in no volume the container mounts", where, ca, p)
			}
			lookupEnv[ca] = ""
		}
	}
	cfg, err := config.FromLookup(func(k string) (string, bool) { v, ok := lookupEnv[k]; return v, ok })
	if err != nil {
		t.Errorf("%s: flashgate would not parse its settings: %v", where, err)
		return
	}
	if cfg.Dev {
		t.Errorf("%s: FLASHGATE_DEV is on: dev mode mints admin tokens for anyone", where)
	}
	switch service {
	case "gateway":
		err = cfg.ValidateGateway()
	case "worker", "ws":
		err = cfg.Validate()
	}
	if err != nil {
		t.Errorf("%s: flashgate %s would refuse to start: %v", where, service, err)
	}
	if service == "gateway" || service == "worker" {
		// The stock binary has only sandbox payment providers: the dev
		// overlay says so; prod needs a build with real ones, and says
		// nothing (the stock binary refuses to start there, as it should).
		if err := cfg.ValidateSandbox(service); err != nil && dir == "overlays/dev" {
			t.Errorf("%s: %v", where, err)
		}
		if cfg.SandboxPayments && dir == "overlays/prod" {
			t.Errorf("%s: FLASHGATE_SANDBOX_PAYMENTS=1 in prod: the sandbox gives goods away and pays nobody", where)
		}
	}
	// Shutdown: the pod must not be killed before it drained.
	if service == "gateway" || service == "worker" || service == "ws" {
		need := cfg.ShutdownTimeout
		if service != "worker" {
			need += cfg.DrainDelay
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			need += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		} else if service != "worker" {
			t.Errorf("%s: want a preStop sleep so that endpoints drop the pod before it drains", where)
		}
		grace := 30 * time.Second // the default
		if g := spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if grace <= need {
			t.Errorf("%s: terminationGracePeriodSeconds %v does not exceed preStop + FLASHGATE_DRAIN_DELAY + FLASHGATE_SHUTDOWN_TIMEOUT (%v)", where, grace, need)
		}
	}
}

// TestManifestsKafkaSizing: in prod, every topic flashgate uses is a
// KafkaTopic with 3 replicas and min.insync.replicas=2, the partitions
// flashgate is told match them, and KEDA never runs more workers than the
// partitions of a topic the workers consume (the extra ones would idle).
func TestManifestsKafkaSizing(t *testing.T) {
	objs := render(t, "overlays/prod")
	decode(t, "overlays/prod", objs)
	var cm map[string]string
	topics := map[string]map[string]any{}
	var scaled []map[string]any
	for _, o := range objs {
		var u map[string]any
		if err := json.Unmarshal(o.raw, &u); err != nil {
			t.Fatal(err)
		}
		switch o.Kind {
		case "ConfigMap":
			if c, ok := o.typ.(*corev1.ConfigMap); ok && strings.HasPrefix(c.Name, "flashgate") {
				cm = c.Data
			}
		case "KafkaTopic":
			name, _ := lookupPath(u, "spec.topicName").(string)
			topics[name] = u
		case "ScaledObject":
			scaled = append(scaled, u)
		}
	}
	cfg, err := config.FromLookup(func(k string) (string, bool) { v, ok := cm[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cfg.Topics() {
		u, ok := topics[name]
		if !ok {
			t.Errorf("no KafkaTopic for %s", name)
			continue
		}
		if r, _ := lookupPath(u, "spec.replicas").(float64); r < 3 {
			t.Errorf("KafkaTopic %s: %v replicas, want 3", name, r)
		}
		cfgMap, _ := lookupPath(u, "spec.config").(map[string]any)
		if fmt.Sprint(cfgMap["min.insync.replicas"]) != "2" {
			t.Errorf("KafkaTopic %s: min.insync.replicas %v, want 2", name, cfgMap["min.insync.replicas"])
		}
	}
	for _, name := range []string{cfg.OrdersTopic(), cfg.GiftsTopic()} {
		if p, _ := lookupPath(topics[name], "spec.partitions").(float64); int(p) != cfg.KafkaPartitions {
			t.Errorf("KafkaTopic %s has %v partitions, FLASHGATE_KAFKA_PARTITIONS says %d", name, p, cfg.KafkaPartitions)
		}
	}
	if len(scaled) == 0 {
		t.Fatal("prod has no ScaledObject for the worker")
	}
	for _, u := range scaled {
		maxN, _ := lookupPath(u, "spec.maxReplicaCount").(float64)
		triggers, _ := lookupPath(u, "spec.triggers").([]any)
		if len(triggers) == 0 {
			t.Fatal("ScaledObject without triggers")
		}
		for _, tr := range triggers {
			md, _ := lookupPath(tr.(map[string]any), "metadata").(map[string]any)
			topic, _ := md["topic"].(string)
			tu, ok := topics[topic]
			if !ok {
				t.Errorf("ScaledObject trigger on topic %q, which has no KafkaTopic", topic)
				continue
			}
			if p, _ := lookupPath(tu, "spec.partitions").(float64); maxN > p {
				t.Errorf("ScaledObject maxReplicaCount %v exceeds the %v partitions of %s: the extra workers would idle", maxN, p, topic)
			}
			if md["allowIdleConsumers"] != "false" {
				t.Errorf("ScaledObject trigger on %s: allowIdleConsumers must be \"false\"", topic)
			}
			if !strings.HasPrefix(fmt.Sprint(md["bootstrapServers"]), strings.Split(cm["FLASHGATE_KAFKA_BROKERS"], ",")[0]) {
				t.Errorf("ScaledObject trigger on %s reads %v, the pods %s", topic, md["bootstrapServers"], cm["FLASHGATE_KAFKA_BROKERS"])
			}
		}
	}
}
