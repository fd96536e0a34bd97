package events_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hookbus/hookbus/pkg/events"
)

func ExampleValidateCatalogData() {
	data, _ := json.Marshal(events.OnUserAfterLogout{
		UserID:   "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
		IP:       "192.0.2.1",
		Endpoint: "html",
	})
	fmt.Println(events.ValidateCatalogData(events.TypeOnUserAfterLogout, "application/json", data))

	err := events.ValidateCatalogData(events.TypeOnUserAfterLogout, "application/json",
		[]byte(`{"user_id":"3f2504e0-4f89-41d3-9a0c-0305e82c3301","ip":"192.0.2.1","endpoint":"web"}`))
	var verr *events.ValidationError
	if errors.As(err, &verr) {
		fmt.Println(verr.Field)
	}
	fmt.Println(err)
	fmt.Println(errors.Is(err, events.ErrInvalid))

	// Types outside the catalog are not checked.
	fmt.Println(events.ValidateCatalogData("com.example.order_created", "text/plain", []byte("hello")))
	// Output:
	// <nil>
	// data.endpoint
	// invalid event: data.endpoint: value "web" not one of html, api
	// true
	// <nil>
}
