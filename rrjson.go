package zmqkit

import (
	"context"
	"encoding/json"
	"fmt"
)

// JSONHandler adapts a typed function to a RequestHandler whose requests and
// replies are JSON bodies (plain JSON, as a Python peer's json.dumps and
// json.loads expect; no "<msgid> <msgtype>" header). A request that does not
// decode into Req is answered with an error reply that names the problem (a
// *MalformedError's message), and f is not called; an error from f becomes
// an error reply as for any RequestHandler.
func JSONHandler[Req, Resp any](f func(context.Context, Req) (Resp, error)) RequestHandler {
	return func(ctx context.Context, body []byte) ([]byte, error) {
		var req Req
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, malformed(body, err, "request is not JSON for %T", req)
		}
		resp, err := f(ctx, req)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("%w: encode json reply: %w", ErrInvalidMessage, err)
		}
		return out, nil
	}
}

// RequestJSON sends req, encoded as JSON, with c.Request and decodes the
// JSON reply into a Resp. Errors are Request's, an encoding error, or a
// *MalformedError (matching ErrMalformed) for a reply that is not JSON for
// Resp. It pairs with JSONHandler.
func RequestJSON[Resp any](ctx context.Context, c *RRClient, req any) (Resp, error) {
	var resp Resp
	body, err := json.Marshal(req)
	if err != nil {
		return resp, c.opError("request", fmt.Errorf("%w: encode json request: %w", ErrInvalidMessage, err))
	}
	reply, err := c.Request(ctx, body)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(reply, &resp); err != nil {
		c.stats.malformed.Add(1)
		return resp, c.opError("request", malformed(reply, err, "reply is not JSON for %T", resp))
	}
	return resp, nil
}
