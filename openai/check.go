package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
)

// Check makes sure, before a pipeline consumes anything, that the model
// endpoint can serve this Enricher: the URL answers, the key is accepted,
// the model exists and the server takes the requests the Enricher sends.
// It asks GET <base URL>/models for the list of models, where the server
// offers one, then sends one completion of the task capped at one token,
// with the parameters every call carries (the output mode and the token
// field settle there, as they would on the first event). That costs a few
// prompt tokens.
//
// It returns nil, or an error that says what is wrong and what to check,
// and matches:
//   - [sluice.ErrFatal] when the key is refused (401, 403) or the quota is
//     spent;
//   - [sluice.ErrMisconfigured] when the URL, the model name or a
//     parameter is wrong (404, 400, 405, 422): no event would get through;
//   - neither when the server did not answer properly (it is down,
//     unreachable, timing out or failing with 5xx): the setup may be right,
//     so try again later.
//
// A rate limit (429) or a spent [Budget] is not a failure: the server knew
// the key and the model. [Enricher.Ready] reports the latest Check's
// result, so that a pipeline's readiness follows it.
func (e *Enricher) Check(ctx context.Context) error {
	err := e.check(ctx)
	e.checked.Store(&checkResult{err: err})
	return err
}

// checkResult is the outcome of the latest Check.
type checkResult struct{ err error }

// Ready implements sluice's Readier: it returns the error of the latest
// [Enricher.Check], or nil when it passed or never ran. It calls nothing.
func (e *Enricher) Ready(context.Context) error {
	if r := e.checked.Load(); r != nil {
		return r.err
	}
	return nil
}

func (e *Enricher) check(ctx context.Context) error {
	where := fmt.Sprintf("openai: checking model %q at %s", e.model, redactURL(e.cfg.baseURL))
	listed, known, models, err := e.listModels(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	fields := make([]jsonenrich.Field, len(e.paths))
	for i, p := range e.paths {
		fields[i] = jsonenrich.Field{Path: p, Text: "ping"}
	}
	user, err := e.task.input(fields)
	if err != nil {
		return fmt.Errorf("%s: building the probe: %w", where, err)
	}
	_, _, _, err = e.ask(ctx, call{name: e.task.Name, schema: e.schema.JSON(), user: user, maxTokens: 1})
	var rl *sluice.RateLimitError
	var pe *sluice.PauseError
	switch {
	case err == nil, errors.Is(err, ErrInvalidAnswer), capReached(err):
		// A one-token answer is cut off, or refused for being cut off
		// (some servers answer 400 for that): the server took the request.
	case errors.As(err, &rl):
		e.log.Warn("openai: the model is rate limited at startup; going on, the pipeline will pause as needed", "err", err)
	case errors.As(err, &pe):
		e.log.Warn("openai: the model budget is spent; going on, the pipeline will pause until it renews", "reason", pe.Reason)
	case errors.Is(err, sluice.ErrMisconfigured) && known && !listed:
		return fmt.Errorf("%s: the server does not list the model (it lists %s): %w", where, models, err)
	case errors.Is(err, sluice.ErrFatal), errors.Is(err, sluice.ErrMisconfigured):
		return fmt.Errorf("%s: %w", where, err)
	default:
		return fmt.Errorf("%s: the server did not answer properly, so the setup is unverified; is it up? %w", where, err)
	}
	if known && !listed {
		e.log.Info("openai: the server does not list the model but answers for it", "model", e.model, "listed", models)
	}
	e.log.Info("openai: model check passed", "model", e.model, "url", redactURL(e.cfg.baseURL),
		"output_mode", e.OutputMode().String(), "token_field", e.TokenField().String())
	return nil
}

// capHint finds refusals of an answer cut off at the token cap, which the
// probe's cap of one token may cause: "Could not finish the message because
// max_tokens or model output limit was reached".
var capHint = regexp.MustCompile(`(?i)could not finish|(max_tokens|max_completion_tokens|output limit|token limit)\b.*\b(was |is )?(reached|hit)`)

// capReached reports whether err is a 400 that blames the probe's token
// cap being reached, not the setup.
func capReached(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest && capHint.MatchString(ae.Message)
}

// listModels asks GET /models. known reports whether the server answered
// with a list, listed whether the model is on it, and models sums the list
// up. A server that offers no list is no failure; a refused key is, as is
// no answer at all.
func (e *Enricher) listModels(ctx context.Context) (listed, known bool, models string, err error) {
	rctx, cancel := context.WithTimeout(ctx, e.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, e.cfg.baseURL+"/models", nil)
	if err != nil {
		return false, false, "", sluice.Misconfigured("bad URL", fmt.Errorf("building the request: %w", err))
	}
	e.authorize(req)
	resp, err := e.http.Do(req)
	if err != nil {
		return false, false, "", fmt.Errorf("the URL does not answer (is the server up, and the host and port right?): %w", e.transportError(ctx, rctx, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, e.cfg.maxBody))
	if err != nil {
		return false, false, "", e.transportError(ctx, rctx, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, false, "", e.classify(resp.StatusCode, resp.Header, data)
	default:
		return false, false, "", nil // no list here; the completion decides
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal(data, &list) != nil || list.Data == nil {
		return false, false, "", nil
	}
	ids := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return slices.Contains(ids, e.model), true, summarize(ids), nil
}

// summarize lists up to 10 names, and how many more there are.
func summarize(ids []string) string {
	if len(ids) == 0 {
		return "no models"
	}
	const most = 10
	if len(ids) <= most {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:most], ", "), len(ids)-most)
}
