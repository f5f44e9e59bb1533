package detect

import (
	"strconv"
	"strings"
)

// Kind is the kind of abuse an incident reports.
type Kind uint8

// The kinds of incident, in the order Stats lists them.
const (
	KindReflection   Kind = iota // replies from the small services flooding a victim
	KindLoop                     // two services answering each other forever
	KindSpoofedFlood             // traffic whose sources are evidently forged
	KindScan                     // one host sweeping for echo/chargen
	KindExposed                  // a host that answers on a service port
	// NumKinds counts the kinds above: an Engine's detectors, one per kind.
	NumKinds = iota
)

// kinds describes the kinds above, by Kind, for the alerts made outside an
// Engine (an Engine's alerts carry their own, see Alert.info).
var kinds = [NumKinds]kindInfo{reflectionKind{}, loopKind{}, spoofedFloodKind{}, scanKind{}, exposedKind{}}

// String returns the kind's name as alerts spell it ("spoofed_flood").
func (k Kind) String() string { return k.info().name() }

// info returns the kind's description, or unknownKind's.
func (k Kind) info() kindInfo {
	if int(k) < len(kinds) {
		return kinds[k]
	}
	return unknownKind{}
}

// Phase is where an incident is in its lifecycle when an alert reports it.
type Phase uint8

// Phases. Scans and exposed services have no updates, and end once their
// rearm time has passed.
const (
	PhaseStart  Phase = iota // once, when the incident begins
	PhaseUpdate              // every update interval while it lasts
	PhaseEnd                 // once it has been quiet for end_after (or rearm), or at the end of input
	NumPhases   = 3
)

var phaseNames = [NumPhases]string{"start", "update", "end"}

// String returns the phase's name as alerts spell it.
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "unknown"
}

// GID is the generator id of every echowatch alert, as Suricata's for its
// own rules.
const GID = 1

// Signature is what an alert says about the rule that raised it, in EVE's
// alert object.
type Signature struct {
	ID       uint32 // signature_id
	Rev      uint32
	Msg      string // signature
	Category string // a Suricata classtype description
	// Severity is 1 (high) to 3 (low).
	Severity int
	// MITRE ATT&CK tactic and technique, as Suricata renders rule metadata.
	TacticID, TacticName       string
	TechniqueID, TechniqueName string
	Advice                     string // what to do, for incident.advice
}

// Signature ids, one per kind and variant. The README copies this table.
//
//	sid      kind           severity  meaning
//	9000001  reflection     2         replies from echo, daytime, qotd, chargen or time (or
//	                                  forged requests into reflectors) flood a victim we
//	                                  protect or an unknown one
//	9000002  reflection     1         outbound: our hosts are the reflectors
//	9000003  reflection     2 (1 out) prefix-wide: traffic spread over a /24 or /64 so thin
//	                                  that no single host crosses the threshold (carpet bombing)
//	9000004  loop           2         two service ports answer each other in both directions
//	9000005  spoofed_flood  2         traffic to one target from bogon, land or random sources
//	9000006  scan           3         UDP sweep of the echo/chargen ports over many hosts
//	9000007  scan           3         TCP SYN sweep of the echo/chargen ports over many hosts
//	9000008  exposed        3         a host answers UDP echo/chargen
//	9000009  exposed        3         a host answers TCP echo/chargen
const (
	SIDReflection         = 9000001
	SIDReflectionOutbound = 9000002
	SIDReflectionPrefix   = 9000003
	SIDLoop               = 9000004
	SIDSpoofedFlood       = 9000005
	SIDScanUDP            = 9000006
	SIDScanTCP            = 9000007
	SIDExposedUDP         = 9000008
	SIDExposedTCP         = 9000009
)

const (
	tacticImpact    = "TA0040"
	tacticDiscovery = "TA0007"

	adviceLoop = "Two services answer each other in a loop that one spoofed packet starts: " +
		"disable echo, chargen and the other small services on both endpoints and block " +
		"UDP 7, 11, 13, 17, 19 and 37 at the perimeter."
	adviceSpoof = "The sources are forged: ask the upstream for ingress filtering " +
		"(BCP 38/84, uRPF), drop bogon sources at the edge and rate-limit the targeted service."
	adviceScan = "A host is sweeping for echo and chargen: if it is an authorised scanner, " +
		"add it to scan.allow; otherwise block it and check the hosts that answered."
	adviceExposed = "Disable echo and chargen in inetd/xinetd (or Windows Simple TCP/IP " +
		"Services) on this host and block TCP/UDP 7 and 19 at the perimeter."
)

// Signatures lists every signature echowatch raises, by id.
var signatures = [...]Signature{
	{ID: SIDReflection, Rev: 2, Msg: reflectionMsg(SIDReflection, anyReflectingService),
		Category: "Attempted Denial of Service", Severity: 2,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification",
		Advice: reflectionAdvice(SIDReflection, reflectingPorts)},
	{ID: SIDReflectionOutbound, Rev: 2, Msg: reflectionMsg(SIDReflectionOutbound, anyReflectingService),
		Category: "Attempted Denial of Service", Severity: 1,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification",
		Advice: reflectionAdvice(SIDReflectionOutbound, reflectingPorts)},
	{ID: SIDReflectionPrefix, Rev: 2, Msg: reflectionMsg(SIDReflectionPrefix, anyReflectingService),
		Category: "Attempted Denial of Service", Severity: 2,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification",
		Advice: reflectionAdvice(SIDReflectionPrefix, reflectingPorts)},
	{ID: SIDLoop, Rev: 1, Msg: "ECHOWATCH UDP service loop",
		Category: "Attempted Denial of Service", Severity: 2,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification", Advice: adviceLoop},
	{ID: SIDSpoofedFlood, Rev: 1, Msg: "ECHOWATCH flood from forged sources",
		Category: "Attempted Denial of Service", Severity: 2,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.001", TechniqueName: "Direct Network Flood", Advice: adviceSpoof},
	{ID: SIDScanUDP, Rev: 1, Msg: "ECHOWATCH UDP echo/chargen sweep",
		Category: "Detection of a Network Scan", Severity: 3,
		TacticID: tacticDiscovery, TacticName: "Discovery",
		TechniqueID: "T1046", TechniqueName: "Network Service Discovery", Advice: adviceScan},
	{ID: SIDScanTCP, Rev: 1, Msg: "ECHOWATCH TCP SYN echo/chargen sweep",
		Category: "Detection of a Network Scan", Severity: 3,
		TacticID: tacticDiscovery, TacticName: "Discovery",
		TechniqueID: "T1046", TechniqueName: "Network Service Discovery", Advice: adviceScan},
	{ID: SIDExposedUDP, Rev: 1, Msg: "ECHOWATCH host answers UDP echo/chargen",
		Category: "Misc activity", Severity: 3,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification", Advice: adviceExposed},
	{ID: SIDExposedTCP, Rev: 1, Msg: "ECHOWATCH host answers TCP echo/chargen",
		Category: "Misc activity", Severity: 3,
		TacticID: tacticImpact, TacticName: "Impact",
		TechniqueID: "T1498.002", TechniqueName: "Reflection Amplification", Advice: adviceExposed},
}

// LookupSignature returns the signature with the given id.
func LookupSignature(sid uint32) (*Signature, bool) {
	for i := range signatures {
		if signatures[i].ID == sid {
			return &signatures[i], true
		}
	}
	return nil, false
}

// Signatures returns every signature echowatch raises, ordered by id.
func Signatures() []Signature {
	return append([]Signature(nil), signatures[:]...)
}

// The reflection signatures name the services an incident saw, in port
// order: "ECHOWATCH echo+chargen reflection toward victim", with advice to
// filter and disable those. Their table entries, which list them, name
// none (anyReflectingService) and advise on every default reflecting
// service; each alert carries a copy that names its own (Reflection.named).
// The id and rev stay those of the table, so a SIEM keying on
// signature_id sees one signature whatever the services.
const anyReflectingService = "small-service"

// reflectionMsg returns the text of reflection signature sid naming the
// services (names joined by '+', "echo+chargen").
func reflectionMsg(sid uint32, services string) string {
	switch sid {
	case SIDReflectionOutbound:
		return "ECHOWATCH " + services + " reflection from our hosts"
	case SIDReflectionPrefix:
		return "ECHOWATCH " + services + " reflection toward prefix (carpet bombing)"
	}
	return "ECHOWATCH " + services + " reflection toward victim"
}

// reflectionAdvice returns the advice of reflection signature sid for
// the services on ports.
func reflectionAdvice(sid uint32, ports []uint16) string {
	names := serviceNames(ports)
	nums := make([]string, len(ports))
	for i, p := range ports {
		nums[i] = strconv.Itoa(int(p))
	}
	source := "source port " + andList(nums)
	if len(ports) > 1 {
		source = "source ports " + andList(nums)
	}
	switch sid {
	case SIDReflectionOutbound:
		return "Our hosts are reflecting traffic at the victim: disable " + andList(names) +
			" (inetd/xinetd, Windows Simple TCP/IP Services) on the listed reflectors and block " +
			"TCP/UDP " + andList(nums) + " at the perimeter."
	case SIDReflectionPrefix:
		return "Carpet bombing: filter UDP from " + source + " toward the whole prefix upstream; " +
			"no single host crosses the threshold, so per-host rules miss it."
	}
	return "Filter UDP from " + source + " toward the victim at the edge or ask your upstream to; " +
		"the reflectors should disable " + andList(names) + "."
}

// serviceNames names the services on ports, in their order.
func serviceNames(ports []uint16) []string {
	names := make([]string, len(ports))
	for i, p := range ports {
		names[i] = serviceName(p)
	}
	return names
}

// andList joins words as a sentence lists them: "a", "a and b", "a, b and c".
func andList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// sig returns the signature with a known id.
func sig(sid uint32) *Signature {
	return &signatures[sid-SIDReflection]
}
