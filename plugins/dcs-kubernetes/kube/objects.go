package kube

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// object is what the backend reads of a ConfigMap, Endpoints or Pod: its
// metadata, and the parts of Endpoints and Pods the layout uses.
type object struct {
	name        string
	rv          string
	uid         string
	labels      map[string]string
	annotations map[string]string
	// subsets are an Endpoints' addresses.
	subsets []corev1.EndpointSubset
	// podIP and nodeName are a Pod's.
	podIP    string
	nodeName string
}

func metaObject(m *metav1.ObjectMeta) object {
	return object{name: m.Name, rv: m.ResourceVersion, uid: string(m.UID), labels: m.Labels, annotations: m.Annotations}
}

// change is a write to one object: annotations and labels to set (a nil
// value removes the entry), and for Endpoints the subsets to put in place.
type change struct {
	annotations map[string]*string
	labels      map[string]*string
	// subsets replaces an Endpoints' subsets when setSubsets is true (an
	// empty list empties them).
	subsets    []corev1.EndpointSubset
	setSubsets bool
}

func (c *change) setAnnotation(k string, v *string) {
	if c.annotations == nil {
		c.annotations = map[string]*string{}
	}
	c.annotations[k] = v
}

// mergePatch renders the change as a JSON merge patch; a non-empty rv makes
// the API server refuse it with 409 Conflict unless the object is still at
// that resourceVersion.
func (c *change) mergePatch(rv string) ([]byte, error) {
	meta := map[string]any{}
	if rv != "" {
		meta["resourceVersion"] = rv
	}
	if len(c.annotations) > 0 {
		meta["annotations"] = c.annotations
	}
	if len(c.labels) > 0 {
		meta["labels"] = c.labels
	}
	body := map[string]any{"metadata": meta}
	if c.setSubsets {
		subsets := c.subsets
		if subsets == nil {
			subsets = []corev1.EndpointSubset{}
		}
		body["subsets"] = subsets
	}
	return json.Marshal(body)
}

// created returns the object a create of the change makes: the given labels
// plus those the change sets, and the annotations it sets.
func (c *change) created(name string, labels map[string]string) object {
	o := object{name: name, labels: map[string]string{}, annotations: map[string]string{}}
	for k, v := range labels {
		o.labels[k] = v
	}
	for k, v := range c.labels {
		if v != nil {
			o.labels[k] = *v
		}
	}
	for k, v := range c.annotations {
		if v != nil {
			o.annotations[k] = *v
		}
	}
	if c.setSubsets {
		o.subsets = c.subsets
	}
	return o
}

// objectAPI is the part of a typed client the backend uses, for one kind in
// one namespace.
type objectAPI interface {
	kind() string
	get(ctx context.Context, name string) (object, error)
	list(ctx context.Context, selector string) ([]object, string, error)
	watch(ctx context.Context, selector, rv string) (watch.Interface, error)
	create(ctx context.Context, o object) (object, error)
	patch(ctx context.Context, name string, patch []byte) (object, error)
	// delete removes the object; a non-empty rv is a precondition (409
	// Conflict when the object moved on).
	delete(ctx context.Context, name, rv string) error
	// convert reads a watched object.
	convert(obj runtime.Object) (object, bool)
}

// typedClient is what client-go's generated clients offer for T with list
// type L.
type typedClient[T runtime.Object, L runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// adapter turns a typed client into an objectAPI.
type adapter[T runtime.Object, L runtime.Object] struct {
	kindName string
	client   typedClient[T, L]
	toObject func(T) object
	build    func(object) T
	items    func(L) ([]T, string)
}

func (a *adapter[T, L]) kind() string { return a.kindName }

func (a *adapter[T, L]) get(ctx context.Context, name string) (object, error) {
	got, err := a.client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return object{}, err
	}
	return a.toObject(got), nil
}

func (a *adapter[T, L]) list(ctx context.Context, selector string) ([]object, string, error) {
	got, err := a.client.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, "", err
	}
	items, rv := a.items(got)
	out := make([]object, len(items))
	for i, it := range items {
		out[i] = a.toObject(it)
	}
	return out, rv, nil
}

func (a *adapter[T, L]) watch(ctx context.Context, selector, rv string) (watch.Interface, error) {
	return a.client.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
}

func (a *adapter[T, L]) create(ctx context.Context, o object) (object, error) {
	got, err := a.client.Create(ctx, a.build(o), metav1.CreateOptions{})
	if err != nil {
		return object{}, err
	}
	return a.toObject(got), nil
}

func (a *adapter[T, L]) patch(ctx context.Context, name string, patch []byte) (object, error) {
	got, err := a.client.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return object{}, err
	}
	return a.toObject(got), nil
}

func (a *adapter[T, L]) delete(ctx context.Context, name, rv string) error {
	opts := metav1.DeleteOptions{}
	if rv != "" {
		opts.Preconditions = &metav1.Preconditions{ResourceVersion: &rv}
	}
	return a.client.Delete(ctx, name, opts)
}

func (a *adapter[T, L]) convert(obj runtime.Object) (object, bool) {
	t, ok := obj.(T)
	if !ok {
		return object{}, false
	}
	return a.toObject(t), true
}

func objectMeta(o object) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: o.name, Labels: o.labels, Annotations: o.annotations}
}

func configMapAPI(c typedClient[*corev1.ConfigMap, *corev1.ConfigMapList]) objectAPI {
	return &adapter[*corev1.ConfigMap, *corev1.ConfigMapList]{
		kindName: "ConfigMap",
		client:   c,
		toObject: func(cm *corev1.ConfigMap) object { return metaObject(&cm.ObjectMeta) },
		build:    func(o object) *corev1.ConfigMap { return &corev1.ConfigMap{ObjectMeta: objectMeta(o)} },
		items: func(l *corev1.ConfigMapList) ([]*corev1.ConfigMap, string) {
			out := make([]*corev1.ConfigMap, len(l.Items))
			for i := range l.Items {
				out[i] = &l.Items[i]
			}
			return out, l.ResourceVersion
		},
	}
}

func endpointsAPI(c typedClient[*corev1.Endpoints, *corev1.EndpointsList]) objectAPI {
	return &adapter[*corev1.Endpoints, *corev1.EndpointsList]{
		kindName: "Endpoints",
		client:   c,
		toObject: func(ep *corev1.Endpoints) object {
			o := metaObject(&ep.ObjectMeta)
			o.subsets = ep.Subsets
			return o
		},
		build: func(o object) *corev1.Endpoints {
			return &corev1.Endpoints{ObjectMeta: objectMeta(o), Subsets: o.subsets}
		},
		items: func(l *corev1.EndpointsList) ([]*corev1.Endpoints, string) {
			out := make([]*corev1.Endpoints, len(l.Items))
			for i := range l.Items {
				out[i] = &l.Items[i]
			}
			return out, l.ResourceVersion
		},
	}
}

func podAPI(c typedClient[*corev1.Pod, *corev1.PodList]) objectAPI {
	return &adapter[*corev1.Pod, *corev1.PodList]{
		kindName: "Pod",
		client:   c,
		toObject: func(p *corev1.Pod) object {
			o := metaObject(&p.ObjectMeta)
			o.podIP = p.Status.PodIP
			o.nodeName = p.Spec.NodeName
			return o
		},
		build: func(o object) *corev1.Pod {
			// The plugin never creates Pods; this only serves the interface.
			return &corev1.Pod{ObjectMeta: objectMeta(o)}
		},
		items: func(l *corev1.PodList) ([]*corev1.Pod, string) {
			out := make([]*corev1.Pod, len(l.Items))
			for i := range l.Items {
				out[i] = &l.Items[i]
			}
			return out, l.ResourceVersion
		},
	}
}

// describe names an object for errors: "ConfigMap default/pg-leader".
func describe(api objectAPI, namespace, name string) string {
	return fmt.Sprintf("%s %s/%s", api.kind(), namespace, name)
}
