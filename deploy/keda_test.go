package deploy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) that the
// examples use; strict decoding rejects any other field.
type scaledObject struct {
	typeMeta
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is the part of KEDA's TriggerAuthentication that
// the examples use.
type triggerAuthentication struct {
	typeMeta
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// kedaMetadata lists the trigger metadata each scaler reads (KEDA 2.x
// documentation of the Kafka and Redis Streams scalers), and which are
// required: a misspelt key would be ignored by KEDA.
var kedaMetadata = map[string]struct{ known, required []string }{
	"kafka": {
		known: []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
			"offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag",
			"limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls"},
		required: []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold"},
	},
	"redis-streams": {
		known: []string{"address", "addressFromEnv", "host", "port", "usernameFromEnv", "passwordFromEnv", "stream",
			"consumerGroup", "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount",
			"databaseIndex", "enableTLS", "unsafeSsl"},
		required: []string{"address", "stream", "consumerGroup", "lagCount"},
	},
}

// TestKEDA: each example scales the Deployment on the lag of the group and
// input the ConfigMap names, with metadata keys KEDA knows, and an
// authentication that reads the Secret the Deployment reads.
func TestKEDA(t *testing.T) {
	all := manifests(t)
	d := only[*appsv1.Deployment](t, all)
	cm := only[*corev1.ConfigMap](t, all)
	auths := map[string]*triggerAuthentication{}
	var scaled []*scaledObject
	for _, objs := range all {
		for _, o := range objs {
			switch v := o.(type) {
			case *scaledObject:
				scaled = append(scaled, v)
			case *triggerAuthentication:
				auths[v.Metadata.Name] = v
			}
		}
	}
	types := map[string]bool{}
	for _, so := range scaled {
		if so.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("ScaledObject %s scales %q, not the Deployment %s", so.Metadata.Name, so.Spec.ScaleTargetRef.Name, d.Name)
		}
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
			t.Errorf("ScaledObject %s: minReplicaCount must be at least 1 (at 0 nobody reports health or lag)", so.Metadata.Name)
		}
		if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
			t.Errorf("ScaledObject %s: maxReplicaCount missing or below minReplicaCount", so.Metadata.Name)
		}
		for _, tr := range so.Spec.Triggers {
			spec, ok := kedaMetadata[tr.Type]
			if !ok {
				t.Errorf("ScaledObject %s: trigger type %q is not an example's", so.Metadata.Name, tr.Type)
				continue
			}
			types[tr.Type] = true
			for k := range tr.Metadata {
				if !contains(spec.known, k) {
					t.Errorf("%s trigger: unknown metadata key %q", tr.Type, k)
				}
			}
			for _, k := range spec.required {
				if tr.Metadata[k] == "" {
					t.Errorf("%s trigger: %s is required", tr.Type, k)
				}
			}
			if tr.Metadata["consumerGroup"] != cm.Data["SLUICE_GROUP"] {
				t.Errorf("%s trigger: consumerGroup %q, but the service's group is %q", tr.Type, tr.Metadata["consumerGroup"], cm.Data["SLUICE_GROUP"])
			}
			input := tr.Metadata["topic"] + tr.Metadata["stream"]
			if input != cm.Data["SLUICE_INPUT"] {
				t.Errorf("%s trigger: reads %q, but the service's input is %q", tr.Type, input, cm.Data["SLUICE_INPUT"])
			}
			if tr.AuthenticationRef != nil {
				a, ok := auths[tr.AuthenticationRef.Name]
				if !ok {
					t.Errorf("%s trigger: no TriggerAuthentication %q", tr.Type, tr.AuthenticationRef.Name)
					continue
				}
				for _, ref := range a.Spec.SecretTargetRef {
					if ref.Name != "sluice-enrich" || ref.Key != "SLUICE_REDIS_PASSWORD" && ref.Key != "SLUICE_KAFKA_SASL_PASSWORD" {
						t.Errorf("TriggerAuthentication %s reads %s/%s, not the service's Secret", a.Metadata.Name, ref.Name, ref.Key)
					}
				}
			}
		}
	}
	for typ := range kedaMetadata {
		if !types[typ] {
			t.Errorf("no example ScaledObject with a %s trigger", typ)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
