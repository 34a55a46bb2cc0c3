package mqttlink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
)

// TestEvidenceUpload queues a file in chunks that reassemble to it, each
// valid against the contract, and refuses paths outside the directory.
func TestEvidenceUpload(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("pcap!"), EvidenceChunkSize/2) // 2.5 chunks
	os.WriteFile(filepath.Join(dir, "denied-1.pcap"), data, 0o600)
	l, err := New(Options{Device: "dev-ev", URL: "tcp://127.0.0.1:1", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.q.Close()
	if err := l.RegisterEvidence(dir); err != nil {
		t.Fatal(err)
	}
	run := func(args string) (any, error) {
		return l.cmds.Dispatch(context.Background(), &command.Command{Payload: command.Payload{ID: "ev-1", Type: command.EvidenceUpload, Args: json.RawMessage(args)}})
	}
	if _, err := run(`{"file":"../../etc/passwd"}`); err == nil {
		t.Fatal("evidence.upload read outside its directory")
	}
	list, err := run(`{}`)
	if err != nil || len(list.(map[string]any)["files"].([]string)) != 1 {
		t.Fatalf("listing: %v %v", list, err)
	}
	if _, err := run(`{"file":"denied-1.pcap"}`); err != nil {
		t.Fatal(err)
	}
	var got []byte
	sum := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		rec, err := l.q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		topic, payload, _ := decodeRecord(rec.Data)
		if topic != l.topics.Evidence {
			continue // the evidence.uploaded event
		}
		if err := schema.ValidateTopic(topic, payload); err != nil {
			t.Fatal(err)
		}
		var c EvidenceChunk
		json.Unmarshal(payload, &c)
		part, _ := base64.StdEncoding.DecodeString(c.Data)
		got = append(got, part...)
		if c.SHA256 != hex.EncodeToString(sum[:]) || c.Chunks != 3 {
			t.Fatalf("chunk %+v", c)
		}
		if c.Chunk == c.Chunks-1 {
			break
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("chunks do not reassemble to the file")
	}
}
