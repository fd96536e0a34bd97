package k8s

import (
	"errors"
	"fmt"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// rendered is the output of one kustomization, every object decoded into
// its Kubernetes API type.
type rendered struct {
	Namespaces      []*corev1.Namespace
	ConfigMaps      []*corev1.ConfigMap
	Secrets         []*corev1.Secret
	Services        []*corev1.Service
	Deployments     []*appsv1.Deployment
	StatefulSets    []*appsv1.StatefulSet
	PDBs            []*policyv1.PodDisruptionBudget
	NetworkPolicies []*networkingv1.NetworkPolicy
}

// render builds the kustomization in dir with kustomize's Go API (what
// `kubectl kustomize dir` does) and decodes every object strictly: a field
// the API type does not have, a duplicated field or a kind the checks do
// not know is an error naming the object.
func render(dir string) (*rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", filepath.ToSlash(dir), err)
	}
	r := &rendered{}
	var errs []error
	for _, res := range resMap.Resources() {
		doc, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		gvk := res.GetGvk()
		if err := r.decode(gvk.ApiVersion(), gvk.Kind, doc); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", gvk.Kind, res.GetName(), err))
		}
	}
	return r, errors.Join(errs...)
}

// decode decodes one object into the API type its apiVersion and kind
// name, refusing unknown and duplicated fields.
func (r *rendered) decode(apiVersion, kind string, doc []byte) error {
	var (
		obj  any
		meta *metav1.TypeMeta
	)
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		o := &corev1.Namespace{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.Namespaces = append(r.Namespaces, o) }()
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.ConfigMaps = append(r.ConfigMaps, o) }()
	case "v1 Secret":
		o := &corev1.Secret{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.Secrets = append(r.Secrets, o) }()
	case "v1 Service":
		o := &corev1.Service{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.Services = append(r.Services, o) }()
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.Deployments = append(r.Deployments, o) }()
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.StatefulSets = append(r.StatefulSets, o) }()
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.PDBs = append(r.PDBs, o) }()
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		obj, meta = o, &o.TypeMeta
		defer func() { r.NetworkPolicies = append(r.NetworkPolicies, o) }()
	default:
		return fmt.Errorf("%s %s is not a kind these checks know: add it to rendered.decode and to the policy", apiVersion, kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("strict decoding: %w", err)
	}
	if meta.APIVersion != apiVersion || meta.Kind != kind {
		return fmt.Errorf("decoded as %s %s", meta.APIVersion, meta.Kind)
	}
	return nil
}

// workload is what the policy looks at in a Deployment or a StatefulSet.
type workload struct {
	Kind, Name, Namespace string
	Replicas              int32
	Selector              *metav1.LabelSelector
	Template              *corev1.PodTemplateSpec
	StatefulSet           *appsv1.StatefulSet // nil for a Deployment
}

func (w workload) String() string { return w.Kind + " " + w.Name }

func (r *rendered) workloads() []workload {
	var out []workload
	for _, d := range r.Deployments {
		out = append(out, workload{Kind: "Deployment", Name: d.Name, Namespace: d.Namespace,
			Replicas: replicas(d.Spec.Replicas), Selector: d.Spec.Selector, Template: &d.Spec.Template})
	}
	for _, s := range r.StatefulSets {
		out = append(out, workload{Kind: "StatefulSet", Name: s.Name, Namespace: s.Namespace,
			Replicas: replicas(s.Spec.Replicas), Selector: s.Spec.Selector, Template: &s.Spec.Template, StatefulSet: s})
	}
	return out
}

func replicas(n *int32) int32 {
	if n == nil {
		return 1 // the API's default
	}
	return *n
}

func (r *rendered) configMap(namespace, name string) *corev1.ConfigMap {
	for _, c := range r.ConfigMaps {
		if c.Namespace == namespace && c.Name == name {
			return c
		}
	}
	return nil
}

func (r *rendered) secret(namespace, name string) *corev1.Secret {
	for _, s := range r.Secrets {
		if s.Namespace == namespace && s.Name == name {
			return s
		}
	}
	return nil
}

func (r *rendered) service(namespace, name string) *corev1.Service {
	for _, s := range r.Services {
		if s.Namespace == namespace && s.Name == name {
			return s
		}
	}
	return nil
}

// secretValue returns the value of key in a Secret, whether written as
// data or as stringData.
func secretValue(s *corev1.Secret, key string) (string, bool) {
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}
